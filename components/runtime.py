"""The composition root: every process-wide object is built here, once, and started with the server.

Each factory is an ``st.cache_resource`` (one object per process, shared by every session, never holding
a person): the startup check and settings, the data directory's SQLite file, the job store (that file, or
PostgreSQL when ``DASHBOARD_DATABASE_URL`` is set), the ``/metrics`` exporter, the prober and its history, the
wall's activity window and alert feed, the audit log, the pull and batch managers, the template and taxonomy stores
and deck library, the chat history store, and one page client per backend. ``lifespan`` is the ``st.App`` lifespan: it
runs the startup checks and starts the prober, the exporter and the job runners (an interrupted batch
resumes) when the server starts, before any browser connects, and stops them when it stops. Nothing
process-wide lives in a module global.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import streamlit as st

from services.access.audit import AuditLog
from services.access.startup import StartupCheck, check_start
from services.chat.history import ChatStore
from services.config import Backend, Settings
from services.connections import ClientPool, connect
from services.db import Database, Store, open_store
from services.errors import ConfigError, DashboardError
from services.metrics import REGISTRY
from services.models.pulls import PullManager
from services.monitoring.activity import ActivityWindow
from services.monitoring.alerts import AlertFeed
from services.monitoring.exporter import Exporter, start_exporter
from services.monitoring.service import Monitoring, start_monitoring
from services.ollama.client import OllamaClient
from services.stage.decks import DeckLibrary
from services.studio.batch import BatchManager
from services.studio.taxonomy_store import TaxonomyStore
from services.studio.templates import TemplateStore

log = logging.getLogger(__name__)


# ---- configuration -------------------------------------------------------------------------------------
@st.cache_resource(show_spinner=False)
def startup(check_address: bool = False) -> StartupCheck:
    """Every start's checks (``ConfigError`` when refused; a refusal is not cached, so a fix is picked up).

    The server's lifespan checks the listening address too; a script run under AppTest has no server.
    """
    address = st.get_option("server.address") if check_address else "127.0.0.1"
    return check_start(os.environ, address=address)


def settings() -> Settings:
    return startup().settings


# ---- process-wide objects --------------------------------------------------------------------------------
@st.cache_resource(show_spinner=False)
def database() -> Database:
    """One handle on the data directory's SQLite file (probe history, audit log; one connection per thread)."""
    return Database.in_dir(settings().data_dir)


def _close_store(store: Store) -> None:
    if store.dialect != "sqlite":  # the SQLite handle is ``database()``'s, closed with it
        store.close()


@st.cache_resource(show_spinner=False, on_release=_close_store)
def job_store() -> Store:
    """Where pull and batch jobs live: PostgreSQL when ``DASHBOARD_DATABASE_URL`` is set (several dashboard
    processes share it), else the data directory's SQLite file. An unreachable PostgreSQL refuses the start."""
    current = settings()
    store = open_store(current.data_dir, current.database_url, sqlite=database())
    log.info("jobs are kept in %s", store.describe())
    return store


@st.cache_resource(show_spinner=False, on_release=lambda exporter: exporter.stop())
def exporter() -> Exporter:
    current = settings()
    return start_exporter(current.metrics_port, current.metrics_addr)


@st.cache_resource(show_spinner=False, on_release=lambda monitoring: monitoring.stop())
def monitoring() -> Monitoring:
    return start_monitoring(settings(), database(), exporter())


@st.cache_resource(show_spinner=False, on_release=lambda window: window.stop())
def activity() -> ActivityWindow:
    """The last five minutes of the dashboard's generations (the wall's top row), sampled from process start."""
    return ActivityWindow(REGISTRY).start()


@st.cache_resource(show_spinner=False, on_release=lambda feed: feed.close() if feed is not None else None)
def alert_feed() -> AlertFeed | None:
    """Firing alerts from ``PROMETHEUS_URL`` (the rules of monitoring/alerts.yml); None without Prometheus."""
    current = settings()
    if not current.prometheus_url:
        return None
    return AlertFeed(current.prometheus_url, timeout_s=min(current.prometheus_timeout_s, 3.0),
                     refresh_s=max(current.kiosk_refresh_s, 5.0))


@st.cache_resource(show_spinner=False)
def audit_log() -> AuditLog:
    return AuditLog(database())


@st.cache_resource(show_spinner=False, on_release=lambda pool: pool.close())
def worker_clients() -> ClientPool:
    """Clients for jobs running on their own threads; they act for their owner through ``acting_as``."""
    return ClientPool(settings())


@st.cache_resource(show_spinner=False, on_release=lambda manager: manager.shutdown())
def pull_manager() -> PullManager:
    """Every session and every dashboard process sees the same pulls; a pull whose process stopped continues here
    (at once after a clean stop, once its lease expired after a crash)."""
    current = settings()
    return PullManager(job_store(), worker_clients().get, current.backends, audit_log(),
                       lease_ttl_s=current.lease_ttl_s)


@st.cache_resource(show_spinner=False, on_release=lambda manager: manager.shutdown())
def batch_manager() -> BatchManager:
    """Every session sees the same batches; at most ``DASHBOARD_BATCH_MAX_RUNNING`` run at once across every
    dashboard process, the rest queue fairly; jobs a stopped process held continue here once their lease is free.
    ``BatchManager.board()`` is what the wall screen shows (queued and running jobs, per-backend throughput)."""

    def on_failure(job_id: str, idx: int, exc: BaseException) -> None:
        log.error("batch %s row %d failed unexpectedly", job_id, idx + 1, exc_info=exc)

    current = settings()
    manager = BatchManager(job_store(), worker_clients().get, on_failure=on_failure, backends=current.backends,
                           max_running=current.batch_max_running, lease_ttl_s=current.lease_ttl_s,
                           taxonomies=taxonomy_store())
    resumed = manager.resume_interrupted()
    if resumed:
        log.info("continued batch jobs a stopped dashboard process held: %s", ", ".join(resumed))
    return manager


@st.cache_resource(show_spinner=False)
def chat_store() -> ChatStore:
    """Everyone's conversations (each person sees only their own); retention and the cap apply from the start."""
    current = settings()
    return ChatStore(database(), retention_days=current.chat_retention_days,
                     max_per_owner=current.chat_max_conversations)


@st.cache_resource(show_spinner=False)
def template_store() -> TemplateStore:
    return TemplateStore(settings().data_dir)


@st.cache_resource(show_spinner=False)
def taxonomy_store() -> TaxonomyStore:
    """The shipped taxonomies and those admins uploaded; a loaded taxonomy is kept (Google's takes ~0.5 s)."""
    return TaxonomyStore(settings().data_dir)


@st.cache_resource(show_spinner=False)
def deck_library() -> DeckLibrary:
    return DeckLibrary(settings().data_dir)


@st.cache_resource(show_spinner=False, max_entries=64, on_release=lambda client: client.close())
def client(backend: Backend) -> OllamaClient:
    """The page path's client of one backend: short page timeout for listings, load timeout for generations.

    It holds no person: a gateway token is minted per request for whoever the script run bound as acting.
    """
    return connect(backend, settings())


# ---- the server's lifespan -------------------------------------------------------------------------------
def start_process_services() -> StartupCheck:
    """Run the startup checks, then start what must run with the process, whoever opens a page first."""
    check = startup(check_address=True)
    startup()  # the same check, as script runs ask for it
    log.info(check.line)  # serve.py has printed it too; in open local mode it says so in every sidebar
    monitoring()  # the exporter, the prober's first round, the panels
    activity()  # the wall's five-minute window starts with the process
    pull_manager()  # continues pulls a stopped process held
    batch_manager()  # continues batches a stopped process held, starts queued ones
    chat_store()  # applies the chat retention and cap, and closes replies a previous process left streaming
    return check


@asynccontextmanager
async def lifespan(_app: Any) -> AsyncIterator[None]:
    """``st.App``'s lifespan: start the process's services with the server, stop them with it.

    A refused configuration stops the start with one line on stderr (exit status 2), before any page.
    """
    try:
        await anyio.to_thread.run_sync(start_process_services)
    except (ConfigError, DashboardError) as exc:
        sys.stderr.write(f"dashboard: refusing to start: {exc}\n")
        sys.stderr.flush()
        os._exit(2)  # uvicorn would print a traceback for a failed lifespan; one line is what helps
    try:
        yield
    finally:
        st.cache_resource.clear()  # runs every factory's on_release: prober, exporter, job runners
