"""Supplier files in and results out: CSV/XLSX read robustly, written safely.

Reading accepts what suppliers really send (a UTF-8 BOM, ``;`` or tab separators, Latin-1/Windows-1252
text, quoted newlines, Excel workbooks) and refuses the rest with one precise sentence: an empty file,
a header with blank or duplicate names, a row with more cells than the header, too many rows or bytes.
Every value is kept as text, exactly as written (an EAN keeps its leading zeros).

Every read is bounded before the expensive work: the upload's size; for a workbook, the sizes its zip
declares once unzipped (a zip bomb is refused in milliseconds, and ``zipfile`` never inflates an entry past
its declared size); then a streaming read that stops at the row and cell caps.

Writing keeps every input column and neutralises cells a spreadsheet would run as a formula (starting
with ``=``, ``+``, ``-``, ``@``, tab or carriage return) by prefixing an apostrophe (OWASP's advice).
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd

from services import format as fmt
from services.errors import InvalidInput

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_ROWS = 100_000
MAX_COLUMNS = 200
MAX_CELLS = 3_000_000  # cells read, blank ones included: 100,000 products of 30 fields
MAX_XLSX_UNZIPPED = 200 * 1000**2  # what a workbook's parts may add up to once unzipped
MAX_XLSX_PARTS = 2_000
SNIFF_BYTES = 64 * 1024
DELIMITERS = ",;\t|"
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
XLSX_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True)
class Table:
    """A parsed file: text cells only; ``notes`` says what was detected (encoding, separator)."""

    frame: pd.DataFrame
    source_name: str
    notes: tuple[str, ...] = ()

    @property
    def columns(self) -> list[str]:
        return [str(c) for c in self.frame.columns]

    def __len__(self) -> int:
        return len(self.frame)


def _decode(data: bytes) -> tuple[str, str]:
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="strict"), "UTF-8 with BOM"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16"), "UTF-16"
    try:
        return data.decode("utf-8"), "UTF-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), "Windows-1252 (Latin-1)"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "Latin-1"


def _sniff_delimiter(text: str) -> str:
    sample = text[:SNIFF_BYTES]
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        first = sample.splitlines()[0] if sample else ""
        counts = {d: first.count(d) for d in DELIMITERS}
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] else ","


def _check_header(header: list[str]) -> list[str]:
    names = [h.strip() for h in header]
    if len(names) > MAX_COLUMNS:
        raise InvalidInput(f"The header has {len(names)} columns; at most {MAX_COLUMNS} are accepted.")
    for index, name in enumerate(names, start=1):
        if not name:
            raise InvalidInput(f"Column {index} has no name in the header row; name it or delete the column.")
    seen: dict[str, int] = {}
    for index, name in enumerate(names, start=1):
        if name in seen:
            raise InvalidInput(f"The column name {name!r} appears twice (columns {seen[name]} and {index}); "
                               "rename one.")
        seen[name] = index
    return names


def _frame(rows: Iterable[Sequence[str]], header: list[str], *, first_line: int) -> pd.DataFrame:
    width = len(header)
    body: list[list[str]] = []
    cells = width
    for offset, row in enumerate(rows):
        cells += len(row)
        if cells > MAX_CELLS:  # blank rows and padding count: reading them costs the same
            raise InvalidInput(f"The file has more than {MAX_CELLS:,} cells (about {MAX_ROWS:,} products of 30 "
                               "fields); split it or delete empty rows and columns.")
        if not any(cell.strip() for cell in row):
            continue  # blank lines (often trailing) are not products
        if len(body) >= MAX_ROWS:
            raise InvalidInput(f"The file has more than {MAX_ROWS:,} product rows; split it into smaller files.")
        if len(row) > width:
            extra = [c for c in row[width:] if c.strip()]
            if extra:
                raise InvalidInput(
                    f"Row {first_line + offset} has {len(row)} cells but the header has {width} columns; "
                    "check the separator or quote the cell that contains it."
                )
            row = row[:width]
        body.append([*row, *[""] * (width - len(row))])
    if not body:
        raise InvalidInput("The file has a header row but no product rows.")
    return pd.DataFrame(body, columns=header, dtype=str)


def read_csv_bytes(data: bytes, source_name: str = "upload.csv") -> Table:
    text, encoding = _decode(data)
    if not text.strip():
        raise InvalidInput("The file is empty.")
    delimiter = _sniff_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quotechar='"', doublequote=True,
                        strict=False)
    try:
        header = next(reader)
        header = _check_header(header)
        frame = _frame(reader, header, first_line=2)
    except csv.Error as exc:
        raise InvalidInput(f"The CSV could not be read near line {reader.line_num}: {exc}.") from None
    shown = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}[delimiter]
    return Table(frame, source_name, (f"encoding {encoding}", f"separator {shown}"))


def check_xlsx_archive(data: bytes) -> None:
    """Refuse a workbook whose zip declares more data than a catalogue can hold, before inflating anything.

    ``zipfile`` (which openpyxl reads through) never inflates an entry past its declared size, so the sum
    checked here bounds the work that follows.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            parts = archive.infolist()
    except (zipfile.BadZipFile, ValueError) as exc:
        raise InvalidInput(f"This is not a readable Excel (.xlsx) workbook: {exc}") from None
    if len(parts) > MAX_XLSX_PARTS:
        raise InvalidInput(f"The workbook has {len(parts):,} parts; an Excel file has a few dozen. "
                           "Save the sheet as CSV.")
    unzipped = sum(part.file_size for part in parts)
    if unzipped > MAX_XLSX_UNZIPPED:
        raise InvalidInput(
            f"The workbook unzips to {fmt.size(unzipped)} (from {fmt.size(len(data))}); the studio reads at most "
            f"{fmt.size(MAX_XLSX_UNZIPPED)}. It is either damaged or built to be huge: save the sheet as CSV or "
            "split it.")


def read_xlsx_bytes(data: bytes, source_name: str = "upload.xlsx") -> Table:
    from openpyxl import load_workbook

    check_xlsx_archive(data)
    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise InvalidInput(f"This is not a readable Excel (.xlsx) workbook: {exc}") from None
    try:
        sheet = workbook.worksheets[0]
        rows = sheet.iter_rows(values_only=True)
        header_cells = next(rows, None)
        if header_cells is None or not any(c is not None and str(c).strip() for c in header_cells):
            raise InvalidInput("The first sheet of the workbook is empty.")
        cells = [("" if c is None else str(c)) for c in header_cells]
        while cells and not cells[-1].strip():
            cells.pop()
        header = _check_header(cells)

        def text_rows() -> Iterable[list[str]]:
            for row in rows:
                yield [_cell_text(c) for c in row]

        frame = _frame(text_rows(), header, first_line=2)
    finally:
        workbook.close()
    return Table(frame, source_name, (f"sheet {sheet.title!r}",))


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def read_table(data: bytes, source_name: str) -> Table:
    """Parse an uploaded file (CSV or XLSX, told apart by content, not only by name)."""
    size = len(data)
    if size == 0:
        raise InvalidInput("The file is empty.")
    if size > MAX_UPLOAD_BYTES:
        raise InvalidInput(
            f"The file is {fmt.size(size)}; the studio accepts up to {fmt.size(MAX_UPLOAD_BYTES)} "
            f"(about {MAX_ROWS:,} product rows). Split it into smaller files."
        )
    name = source_name.lower()
    if data.startswith(XLSX_MAGIC) or name.endswith((".xlsx", ".xlsm")):
        return read_xlsx_bytes(data, source_name)
    if name.endswith(".xls"):
        raise InvalidInput("Old Excel .xls files are not supported; save it as .xlsx or CSV.")
    if b"\x00" in data[:4096] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InvalidInput("This file is binary, not a CSV or an Excel workbook.")
    return read_csv_bytes(data, source_name)


def read_table_file(path: str) -> Table:
    """Read a file from disk with the same checks as an upload (used by the command line)."""
    import os

    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise InvalidInput(f"Cannot read {path}: {exc.strerror}.") from None
    if size > MAX_UPLOAD_BYTES:
        raise InvalidInput(f"{path} is {fmt.size(size)}; at most {fmt.size(MAX_UPLOAD_BYTES)} is accepted.")
    with open(path, "rb") as handle:
        return read_table(handle.read(), os.path.basename(path))


def require_columns(table: Table, mapping: dict[str, str | None], required: Iterable[str],
                    labels: dict[str, str] | None = None) -> None:
    """Every required field must be mapped to a column that really exists in the file; fields are named with
    the labels people see (``labels``), not their internal names."""
    columns = set(table.columns)
    for field_name in required:
        label = (labels or {}).get(field_name, field_name)
        column = mapping.get(field_name)
        if not column:
            raise InvalidInput(f"Map a column to the required field “{label}” "
                               f"(the file's columns are: {', '.join(table.columns)}).")
        if column not in columns:
            raise InvalidInput(f"The column {column!r} mapped to “{label}” is not in the file.")


# ---- writing -----------------------------------------------------------------------------------------


def neutralise(value: object) -> str:
    """Text a spreadsheet shows as text, never runs.

    >>> neutralise("=HYPERLINK(\\"http://x\\")")
    '\\'=HYPERLINK("http://x")'
    >>> neutralise("Robe rouge")
    'Robe rouge'
    """
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


def safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.astype(object).where(frame.notna(), "")
    out = out.map(neutralise)
    out.columns = [neutralise(c) for c in frame.columns]
    return out


def to_csv_bytes(frame: pd.DataFrame) -> bytes:
    """UTF-8 with a BOM, so Excel opens accents correctly."""
    buffer = io.StringIO()
    safe_frame(frame).to_csv(buffer, index=False, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    return buffer.getvalue().encode("utf-8-sig")


def to_xlsx_bytes(frame: pd.DataFrame, sheet_title: str = "results") -> bytes:
    """A write-only workbook; every cell is text (after ``neutralise`` nothing starts with ``=``, which is the
    only thing openpyxl would store as a formula)."""
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(sheet_title)
    safe = safe_frame(frame)
    sheet.append([_xlsx_text(c) for c in safe.columns])
    for record in safe.itertuples(index=False, name=None):
        sheet.append([_xlsx_text(v) for v in record])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _xlsx_text(value: str) -> str:
    # XML 1.0 cannot carry most control characters; openpyxl would raise on them.
    return "".join(ch for ch in value if ch in "\t\n\r" or ord(ch) >= 32)
