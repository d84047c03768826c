"""Rows of a decoder call that hold several windows (packing).

Sentence-level Docs are short: with one window per row a batch pads every row to its
longest Doc, and most decoder positions are padding. Packing places several windows one
after another in a row of at most ``capacity`` positions; the decoder call then keeps them
apart with per-window segment ids (decoder/packed_attention.py), so every window computes exactly
what it computes alone. Long Docs keep their windows (one full row each); short windows fill
the rest.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy

from ..errors import CmllmError, Errors
from .windows import EXACT_WIDTHS, WidthRounding


def pack_rows(lengths: Sequence[int], *, capacity: int, balance: bool = True) -> list[list[int]]:
    """Group windows into rows of at most ``capacity`` positions (best fit, longest first).

    lengths (Sequence[int]): the length of each window (BOS included). A window longer than
        the capacity gets a row of its own.
    capacity (int): the most positions a row holds.
    balance (bool): with the number of rows that ``capacity`` needs, make the rows as short
        as that number allows (the smallest row width, from an even split up, with which
        best fit needs no more rows), so that rows end evenly rather than leaving one
        partly filled row that would pad a whole call, or need a call of its own.
    RETURNS (List[List[int]]): window indices per row, each index exactly once. Inside a row
        windows keep the order in which they were placed. Empty windows are left out (they
        have nothing to compute).
    """
    if isinstance(capacity, bool) or not isinstance(capacity, (int, numpy.integer)) or capacity < 1:
        raise CmllmError(Errors.E079.format(name="capacity", value=capacity, why="must be an int >= 1"))
    sizes = numpy.asarray(lengths, dtype=numpy.int64).reshape(-1)
    rows = _best_fit(sizes, int(capacity))
    if not balance or len(rows) < 2:
        return rows
    n_rows = len(rows)
    width = max(int(sizes.max()), -(-int(sizes[sizes > 0].sum()) // n_rows))
    while width < capacity:
        trial = _best_fit(sizes, width)
        if len(trial) <= n_rows:
            return trial
        width += max(1, width // 50)
    return rows


def _best_fit(lengths: numpy.ndarray, capacity: int) -> list[list[int]]:
    order = numpy.argsort(-lengths, kind="stable")
    rows: list[list[int]] = []
    # by_space[s]: the rows with exactly s positions free (s < capacity).
    by_space: list[list[int]] = [[] for _ in range(capacity + 1)]
    for index in order.tolist():
        length = int(lengths[index])
        if length <= 0:
            continue
        if length >= capacity:
            rows.append([index])
            continue
        # Best fit: the fullest row that still has room (the fewest free positions >= length).
        space = next((s for s in range(length, capacity) if by_space[s]), None)
        if space is None:
            row = len(rows)
            rows.append([index])
            free = capacity - length
        else:
            row = by_space[space].pop()
            rows[row].append(index)
            free = space - length
        if free > 0:
            by_space[free].append(row)
    return rows


@dataclass(eq=False)
class PackedBatch:
    """One decoder call over packed rows.

    input_ids (numpy.ndarray): int64 (rows, width), padding = pad_id.
    segments (numpy.ndarray): int64 (rows, width), 0 = padding, 1, 2, ... per window.
    window_row (numpy.ndarray): int64, per window of ``windows``: its row.
    window_column (numpy.ndarray): int64, per window: the column where it starts.
    """

    input_ids: numpy.ndarray
    segments: numpy.ndarray
    window_row: numpy.ndarray
    window_column: numpy.ndarray


def pad_packed(
    windows: Sequence[numpy.ndarray],
    rows: Sequence[Sequence[int]],
    *,
    pad_id: int,
    widths: WidthRounding = EXACT_WIDTHS,
) -> PackedBatch:
    """Lay out rows of windows into one right-padded batch.

    windows (Sequence[numpy.ndarray]): the piece ids of every window of the plan.
    rows (Sequence[Sequence[int]]): the windows of each row of this batch.
    pad_id (int): written into padding positions (they are masked out).
    widths (WidthRounding): how far the batch's width is padded beyond its fullest row.
    RETURNS (PackedBatch): the batch; window_row/window_column are indexed like ``windows``
        (-1 for windows not in this batch).
    """
    fills = [sum(len(windows[i]) for i in row) for row in rows]
    width = widths(max(fills, default=0))
    input_ids = numpy.full((len(rows), width), pad_id, dtype=numpy.int64)
    segments = numpy.zeros((len(rows), width), dtype=numpy.int64)
    window_row = numpy.full(len(windows), -1, dtype=numpy.int64)
    window_column = numpy.full(len(windows), -1, dtype=numpy.int64)
    for r, row in enumerate(rows):
        column = 0
        for segment, index in enumerate(row, start=1):
            piece_ids = windows[index]
            end = column + len(piece_ids)
            input_ids[r, column:end] = piece_ids
            segments[r, column:end] = segment
            window_row[index] = r
            window_column[index] = column
            column = end
    return PackedBatch(input_ids=input_ids, segments=segments, window_row=window_row, window_column=window_column)


def padding_waste(fills: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """The fraction of decoder positions that are padding when the rows with these fills
    are batched as given (each batch padded to its longest row)."""
    total = real = 0
    for batch in batches:
        longest = max((fills[i] for i in batch), default=0)
        total += longest * len(batch)
        real += sum(fills[i] for i in batch)
    return 0.0 if total == 0 else 1.0 - real / total
