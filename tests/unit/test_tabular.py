"""Reading supplier files the way they really arrive, and writing results that are safe to open."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from openpyxl import Workbook, load_workbook

from services.errors import InvalidInput
from services.studio import tabular
from services.studio.tabular import (
    MAX_ROWS,
    MAX_UPLOAD_BYTES,
    neutralise,
    read_table,
    read_table_file,
    require_columns,
    to_csv_bytes,
    to_xlsx_bytes,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_products_fixture_keeps_quoted_newlines_and_payloads_as_text() -> None:
    table = read_table_file(str(FIXTURES / "products.csv"))
    assert len(table) == 6 and table.columns[0] == "sku"
    assert table.frame.loc[5, "occasion"] == "anniversaire\net soirée"
    assert table.frame.loc[2, "name"] == "Robe Iris, fendue"
    assert table.frame.loc[0, "ean"] == "3700000000017"  # text, not a float
    assert table.frame.loc[4, "name"].startswith("=HYPERLINK(")


def test_bom_and_semicolons() -> None:
    table = read_table_file(str(FIXTURES / "products_bom_semicolon.csv"))
    assert table.columns == ["Type", "Nom", "Couleur", "Matière"]
    assert "encoding UTF-8 with BOM" in table.notes and "separator semicolon" in table.notes
    assert table.frame.loc[1, "Matière"] == "crêpe"


def test_latin1_fallback() -> None:
    table = read_table_file(str(FIXTURES / "products_latin1.csv"))
    assert table.columns[-1] == "Matière"
    assert table.frame.loc[0, "Nom"] == "Robe Élodie" and table.frame.loc[1, "Couleur"] == "vert émeraude"
    assert any("Latin-1" in note for note in table.notes)


@pytest.mark.parametrize(("data", "message"), [
    (b"", "The file is empty."),
    (b"\n\n  \n", "The file is empty."),
    (b"sku,name\n", "header row but no product rows"),
    (b"sku,,price\nA,b,1\n", "Column 2 has no name"),
    (b"sku,name,sku\nA,b,c\n", "'sku' appears twice (columns 1 and 3)"),
    (b"sku,name\nA,b\nB,c,d\n", "Row 3 has 3 cells but the header has 2 columns"),
    (b"\x00\x01\x02binary", "binary"),
])
def test_refused_with_a_precise_message(data: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_table(data, "upload.csv")


def test_empty_fixture_file() -> None:
    with pytest.raises(InvalidInput, match="empty"):
        read_table_file(str(FIXTURES / "empty.csv"))


def test_a_50_mb_upload_is_refused_before_parsing() -> None:
    data = b"sku,name\n" + b"A,robe\n" * (50 * 1024 * 1024 // 7)
    with pytest.raises(InvalidInput, match=r"The file is 52 MB; the studio accepts up to 20 MB"):
        read_table(data, "big.csv")


def test_100k_rows_are_accepted_and_one_more_is_refused() -> None:
    body = "".join(f"SKU{i},Robe {i},{i % 97}.90\n" for i in range(MAX_ROWS))
    table = read_table(("sku,name,price\n" + body).encode(), "big.csv")
    assert len(table) == MAX_ROWS and table.frame.iloc[-1]["sku"] == f"SKU{MAX_ROWS - 1}"
    with pytest.raises(InvalidInput, match="more than 100,000 product rows"):
        read_table(("sku,name,price\n" + body + "X,Y,1\n").encode(), "big.csv")


def test_ragged_short_rows_are_padded_and_trailing_empty_cells_ignored() -> None:
    table = read_table(b"a;b;c\n1;2\n4;5;6;\n", "x.csv")
    assert table.frame.values.tolist() == [["1", "2", ""], ["4", "5", "6"]]


def test_missing_required_column_message() -> None:
    table = read_table_file(str(FIXTURES / "missing_column.csv"))
    with pytest.raises(InvalidInput, match=r"required field “Product type”.*sku, name, price"):
        require_columns(table, {"product_type": None}, ["product_type"], {"product_type": "Product type"})
    with pytest.raises(InvalidInput, match="'Type' mapped to “product_type” is not in the file"):
        require_columns(table, {"product_type": "Type"}, ["product_type"])


def test_xlsx_is_read_as_text() -> None:
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["sku", "name", "price", None])
    sheet.append(["A1", "Robe Lina", 189.0, None])
    sheet.append(["A2", None, 79.5, None])
    buffer = io.BytesIO()
    workbook.save(buffer)
    table = read_table(buffer.getvalue(), "catalogue.xlsx")
    assert table.columns == ["sku", "name", "price"]
    assert table.frame.values.tolist() == [["A1", "Robe Lina", "189"], ["A2", "", "79.5"]]


def test_broken_xlsx_is_refused() -> None:
    with pytest.raises(InvalidInput, match="not a readable Excel"):
        read_table(b"PK\x03\x04garbage", "x.xlsx")


def test_neutralise() -> None:
    assert [neutralise(v) for v in ("=1+1", "+33 6", "-5", "@SUM(A1)", "\tx", "ok", None)] == \
        ["'=1+1", "'+33 6", "'-5", "'@SUM(A1)", "'\tx", "ok", ""]


def test_written_files_keep_every_column_and_never_carry_formulas() -> None:
    frame = read_table_file(str(FIXTURES / "products.csv")).frame.copy()
    frame["ai_result"] = ["ok", "ok", "ok", "=cmd|' /C calc'!A0", "ok", "ok"]
    csv_bytes = to_csv_bytes(frame)
    assert csv_bytes.startswith(b"\xef\xbb\xbf")
    back = pd.read_csv(io.BytesIO(csv_bytes), dtype=str, keep_default_na=False, encoding="utf-8-sig")
    assert list(back.columns) == list(frame.columns)
    assert back.loc[4, "name"].startswith("'=HYPERLINK(") and back.loc[3, "ai_result"].startswith("'=")
    assert back.loc[5, "occasion"] == "anniversaire\net soirée"

    workbook = load_workbook(io.BytesIO(to_xlsx_bytes(frame)))
    sheet = workbook.active
    cells = [cell for row in sheet.iter_rows() for cell in row]
    assert all(cell.data_type == "s" for cell in cells if cell.value is not None)
    values = [[c.value for c in row] for row in sheet.iter_rows()]
    assert values[0] == list(frame.columns)
    assert values[5][2] == "'=HYPERLINK(\"http://evil.example\",\"clic\")"
    assert values[5][7] == "'@SUM(A1)" and values[5][6] == "'-5"
    assert values[4][2] == "<script>alert('x')</script>"  # kept as inert text


def _workbook_with_sheet(sheet_rows: Callable[[Any], None]) -> bytes:
    """A real workbook whose first sheet's XML is written by ``sheet_rows`` (streamed, so it can be huge)."""
    from openpyxl import Workbook

    book = Workbook()
    book.active.append(["name", "type"])
    plain = io.BytesIO()
    book.save(plain)
    source = zipfile.ZipFile(io.BytesIO(plain.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for info in source.infolist():
            if info.filename != "xl/worksheets/sheet1.xml":
                archive.writestr(info, source.read(info.filename))
                continue
            with archive.open(info.filename, "w", force_zip64=True) as sheet:
                sheet.write(b'<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/'
                            b'spreadsheetml/2006/main"><sheetData>'
                            b'<row><c t="inlineStr"><is><t>name</t></is></c><c t="inlineStr"><is><t>type</t></is>'
                            b'</c></row>')
                sheet_rows(sheet)
                sheet.write(b"</sheetData></worksheet>")
    return out.getvalue()


def test_an_xlsx_zip_bomb_is_refused_from_its_declared_sizes() -> None:
    """A few MB on disk that unzip to 300 MB of sheet XML: refused before anything is inflated."""
    row = b'<row><c t="inlineStr"><is><t>x</t></is></c><c t="inlineStr"><is><t>y</t></is></c></row>' * 1000

    def huge(sheet: Any) -> None:
        for _ in range(300_000_000 // len(row)):
            sheet.write(row)

    bomb = _workbook_with_sheet(huge)
    assert len(bomb) < MAX_UPLOAD_BYTES // 4  # small enough to pass the upload limit
    with pytest.raises(InvalidInput, match=r"unzips to 29\d MB .*reads at most 200 MB"):
        read_table(bomb, "catalogue.xlsx")


def test_the_cell_cap_stops_a_streaming_read_even_on_blank_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tabular, "MAX_CELLS", 1_000)
    blank_rows = _workbook_with_sheet(lambda sheet: sheet.write(b"<row><c/><c/></row>" * 2_000))
    with pytest.raises(InvalidInput, match="more than 1,000 cells"):
        read_table(blank_rows, "catalogue.xlsx")
    many = b"name;type\n" + b"Robe;robe\n" * 600
    with pytest.raises(InvalidInput, match="more than 1,000 cells"):
        read_table(many, "catalogue.csv")


def test_a_workbook_of_too_many_parts_is_refused() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for index in range(2_001):
            archive.writestr(f"xl/part{index}.xml", b"")
    with pytest.raises(InvalidInput, match="2,001 parts"):
        read_table(out.getvalue(), "catalogue.xlsx")
