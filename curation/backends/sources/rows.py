"""What every tabular source does with its rows: decode them one by one, and give them their ids.

Decoding: a batch of rows read by Arrow (from `datasets`, or a Parquet index) is turned into
Python values in one call; when that fails (a string column holding bytes that are not UTF-8, a
struct whose fields cannot be read), the batch is decoded again row by row and column by column,
so only the rows that fail become rejects (`row_undecodable`, naming the row's position and the
column) and every other row goes on.

Ids: without an id column a row's id is its position (`split:index`, as always). With one
(`source.id_column`), the id is that column's value, so a reshuffled or re-versioned source keeps
its sample ids and its cache; a row whose id is null, empty, not text or an integer, or already
taken by an earlier row is a reject with its reason, and keeps its positional id so it can be
reported.
"""

from __future__ import annotations

from typing import Any, Iterator

import pyarrow as pa

from curation.core.reasons import ID_DUPLICATE, ID_EMPTY, ID_INVALID, ID_MISSING, ROW_UNDECODABLE, STAGE
from curation.core.records import Reject

# What Arrow raises when a value cannot become a Python value (UnicodeDecodeError is a ValueError).
DECODE_ERRORS = (ValueError, OverflowError, pa.ArrowException)


def decode_rows(table: pa.Table, first_position: int) -> Iterator[dict[str, Any] | Reject]:
    """Each row of `table` as a dict, or as a `row_undecodable` reject naming its position and column."""
    try:
        yield from table.to_pylist()
        return
    except DECODE_ERRORS:
        pass  # some row does not decode: find which, and keep the others
    for offset in range(table.num_rows):
        yield decode_row(table.slice(offset, 1), first_position + offset)


def decode_row(row: pa.Table, position: int) -> dict[str, Any] | Reject:
    values = {}
    for name in row.column_names:
        try:
            values[name] = row.column(name).to_pylist()[0]
        except DECODE_ERRORS as exc:
            return Reject(STAGE, ROW_UNDECODABLE, f"row {position}: column {name!r} cannot be decoded "
                                                  f"({type(exc).__name__}: {exc})")
    return values


class RowIds:
    """Assigns each row its source id, from `column` when one is named; keeps the ids seen so far."""

    def __init__(self, column: str | None):
        self.column = column
        self.first_row: dict[str, int] = {}  # id -> the position of the row that has it

    def assign(self, row: dict[str, Any], positional: str, position: int) -> tuple[str, Reject | None]:
        """(the row's id, or its positional id when it has no usable one; the reject, if any)."""
        if self.column is None:
            return positional, None
        value = row.get(self.column)
        where = f"row {position}: {self.column}"
        if value is None:
            return positional, Reject(STAGE, ID_MISSING, f"{where} is null")
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            return positional, Reject(STAGE, ID_INVALID, f"{where} holds {type(value).__name__}, "
                                                         "not text or an integer")
        source_id = str(value)
        if not source_id.strip():
            return positional, Reject(STAGE, ID_EMPTY, f"{where} is empty")
        first = self.first_row.setdefault(source_id, position)
        if first != position:
            return positional, Reject(STAGE, ID_DUPLICATE, f"{where}={source_id!r} is already the id of row {first}")
        return source_id, None
