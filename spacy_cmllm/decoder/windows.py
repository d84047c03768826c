"""Windows over the pieces of long documents, and batches of windows.

Nothing is truncated. For prediction, a doc longer than the window is covered by windows
that start every `stride` pieces, the last one shifted left to end exactly at the doc's end,
and each piece's vector is read from the one window that gives it the most context on both
sides. In training the overlap would compute (and backpropagate) pieces twice, so there a
doc is cut into consecutive windows instead, at sentence starts where the doc has them.

Sequence repetition (Kukić et al., 2025) lays a window out as ``BOS x x ... x`` with its
pieces ``repeat`` times in one decoder sequence, and reads every piece from the LAST copy,
which has seen all of the window even through causal layers. ``window`` and ``stride`` count
a window's distinct pieces (one copy), so which pieces share a window, and so which context a
piece gets, does not depend on ``repeat``; the decoder sees ``1 + repeat * window`` positions.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy

from ..errors import CmllmError, Errors


@dataclass(eq=False)
class WindowPlan:
    """Which windows to run, and where each piece's vector is read from.

    windows (List[numpy.ndarray]): int64 piece ids of each window, BOS first when one is used.
    doc_index (numpy.ndarray): int64, the doc each window belongs to.
    gather_window (numpy.ndarray): int64, one entry per piece (docs concatenated in order): the
        window to read the piece's vector from.
    gather_position (numpy.ndarray): int64, one entry per piece: the position in that window
        (counting the BOS).
    doc_lengths (numpy.ndarray): int64, the number of pieces of each doc.
    """

    windows: list[numpy.ndarray]
    doc_index: numpy.ndarray
    gather_window: numpy.ndarray
    gather_position: numpy.ndarray
    doc_lengths: numpy.ndarray


def plan_windows(
    docs: Sequence[numpy.ndarray],
    *,
    window: int,
    stride: int,
    bos_id: int | None,
    repeat: int = 1,
) -> WindowPlan:
    """Cover the pieces of each doc with overlapping windows.

    docs (Sequence[numpy.ndarray]): the piece ids of each doc (one-dimensional integer arrays).
    window (int): the most pieces a window holds, not counting the BOS.
    stride (int): the distance between window starts, 1 <= stride <= window.
    bos_id (Optional[int]): a piece prepended to every window, e.g. the model's BOS: it is an
        attention sink, so each window starts the way the model saw text in pre-training. Its
        vector is never read. None: no piece is prepended.
    repeat (int): copies of the window's pieces after the BOS; vectors are read from the last.
    RETURNS (WindowPlan): the windows and the gather indices.
    """
    _check_int("window", window, minimum=1)
    _check_int("stride", stride, minimum=1)
    _check_int("repeat", repeat, minimum=1)
    if stride > window:
        raise CmllmError(Errors.E040.format(name="stride", value=stride, why=f"must be <= window ({window})"))
    if bos_id is not None:
        _check_int("bos_id", bos_id, minimum=0)
    offset = 0 if bos_id is None else 1
    windows: list[numpy.ndarray] = []
    doc_index: list[int] = []
    gather_window: list[numpy.ndarray] = []
    gather_position: list[numpy.ndarray] = []
    doc_lengths = numpy.zeros(len(docs), dtype=numpy.int64)
    for i, ids in enumerate(docs):
        ids = _check_ids(i, ids)
        n = len(ids)
        doc_lengths[i] = n
        if n == 0:
            continue
        starts = _window_starts(n, window=window, stride=stride)
        length = min(window, n)
        best = _best_windows(n, starts, length=length)
        gather_window.append(len(windows) + best)
        # Every window of a doc has `length` pieces, so its last copy starts at the same place.
        gather_position.append(numpy.arange(n) - starts[best] + offset + (repeat - 1) * length)
        for start in starts:
            windows.append(_window(ids[start : start + window], bos_id, repeat))
            doc_index.append(i)
    return WindowPlan(
        windows=windows,
        doc_index=numpy.asarray(doc_index, dtype=numpy.int64),
        gather_window=_concat(gather_window),
        gather_position=_concat(gather_position),
        doc_lengths=doc_lengths,
    )


def plan_training_windows(
    docs: Sequence[numpy.ndarray],
    *,
    window: int,
    bos_id: int | None,
    sentence_starts: Sequence[numpy.ndarray | None] | None = None,
    repeat: int = 1,
) -> WindowPlan:
    """Cut each doc into consecutive, non-overlapping windows: every piece is computed once.

    docs (Sequence[numpy.ndarray]): the piece ids of each doc.
    window (int): the most pieces a window holds, not counting the BOS.
    bos_id (Optional[int]): a piece prepended to every window (never read), or None.
    sentence_starts (Optional[Sequence[Optional[numpy.ndarray]]]): per doc, the piece indices
        at which sentences start, or None. Cuts are placed at sentence starts where one lies
        close to an even split, so a window rarely starts mid-sentence; a sentence longer
        than the window is cut inside.
    repeat (int): copies of each window's pieces after the BOS; vectors are read from the last.
    RETURNS (WindowPlan): the windows and the gather indices (one window per piece).
    """
    _check_int("window", window, minimum=1)
    _check_int("repeat", repeat, minimum=1)
    if bos_id is not None:
        _check_int("bos_id", bos_id, minimum=0)
    offset = 0 if bos_id is None else 1
    windows: list[numpy.ndarray] = []
    doc_index: list[int] = []
    gather_window: list[numpy.ndarray] = []
    gather_position: list[numpy.ndarray] = []
    doc_lengths = numpy.zeros(len(docs), dtype=numpy.int64)
    for i, ids in enumerate(docs):
        ids = _check_ids(i, ids)
        n = len(ids)
        doc_lengths[i] = n
        if n == 0:
            continue
        starts = None if sentence_starts is None else sentence_starts[i]
        cuts = _consecutive_cuts(n, window=window, sentence_starts=starts)
        for start, end in zip(cuts[:-1], cuts[1:]):
            piece_ids = _window(ids[start:end], bos_id, repeat)
            gather_window.append(numpy.full(end - start, len(windows), dtype=numpy.int64))
            gather_position.append(numpy.arange(end - start, dtype=numpy.int64) + offset + (repeat - 1) * (end - start))
            windows.append(piece_ids)
            doc_index.append(i)
    return WindowPlan(
        windows=windows,
        doc_index=numpy.asarray(doc_index, dtype=numpy.int64),
        gather_window=_concat(gather_window),
        gather_position=_concat(gather_position),
        doc_lengths=doc_lengths,
    )


def _consecutive_cuts(n: int, *, window: int, sentence_starts: numpy.ndarray | None) -> list[int]:
    """Cut points 0 = c0 < c1 < ... < ck = n with every ck - ck-1 <= window.

    Each cut aims at an even split of what is left (so the last window is not a stub), and
    moves to the sentence start nearest that aim when one lies within the window's reach and
    not so early that it leaves a stub.
    """
    candidates = numpy.zeros(0, dtype=numpy.int64)
    if sentence_starts is not None:
        candidates = numpy.unique(numpy.asarray(sentence_starts, dtype=numpy.int64))
        candidates = candidates[(candidates > 0) & (candidates < n)]
    cuts = [0]
    start = 0
    while n - start > window:
        left = n - start
        aim = start + -(-left // -(-left // window))  # ceil(left / ceil(left / window))
        # A sentence start counts if the window it ends is at least half the even split long:
        # an earlier one would leave a stub window and a longer rest.
        lowest = start + (aim - start + 1) // 2
        reachable = candidates[(candidates >= lowest) & (candidates <= start + window)]
        if len(reachable):
            # Nearest to the aim; on a tie the later one, which leaves less for what follows.
            distance = numpy.abs(reachable - aim)
            start = int(reachable[len(reachable) - 1 - int(numpy.argmin(distance[::-1]))])
        else:
            start = aim
        cuts.append(start)
    cuts.append(n)
    return cuts


def _window_starts(n: int, *, window: int, stride: int) -> numpy.ndarray:
    """The start of each window over n >= 1 pieces: 0, stride, 2*stride, ..., with the last
    window ending exactly at n (shifted left rather than left short)."""
    if n <= window:
        return numpy.zeros(1, dtype=numpy.int64)
    return numpy.append(numpy.arange(0, n - window, stride, dtype=numpy.int64), n - window)


@dataclass(frozen=True)
class WidthRounding:
    """How far a decoder call's width is padded: up to a multiple of ``multiple``, but never
    past ``ceiling``, the widest row a plan can have.

    oneDNN, which runs bf16 on CPUs, builds and caches kernels per input shape: a stream of
    Docs of every length would make a new kernel for nearly every call, and its caches grow
    for tens of thousands of Docs. A few widths keep the kernels few and reused at the cost of
    a few padded positions. Full rows (a long document's windows) already share one shape, so
    rounding them past the ceiling would add padding and nothing else.
    """

    multiple: int = 1
    ceiling: int | None = None

    def __call__(self, width: int) -> int:
        if self.multiple <= 1:
            return width
        rounded = -(-width // self.multiple) * self.multiple
        if self.ceiling is not None and rounded > self.ceiling:
            return max(width, self.ceiling)
        return rounded


EXACT_WIDTHS = WidthRounding()


def pad_windows(
    windows: Sequence[numpy.ndarray], *, pad_id: int, widths: WidthRounding = EXACT_WIDTHS
) -> tuple[numpy.ndarray, numpy.ndarray]:
    """Right-pad windows into one batch.

    windows (Sequence[numpy.ndarray]): the piece ids of each window.
    pad_id (int): the id written into padding positions (they are masked out).
    widths (WidthRounding): how far the batch's width is padded beyond its longest window.
    RETURNS (Tuple[numpy.ndarray, numpy.ndarray]): input_ids and attention_mask, both int64 of
        shape (len(windows), longest window rounded up); the mask is 1 on real pieces, 0 on
        padding.
    """
    width = widths(max((len(w) for w in windows), default=0))
    input_ids = numpy.full((len(windows), width), pad_id, dtype=numpy.int64)
    attention_mask = numpy.zeros((len(windows), width), dtype=numpy.int64)
    for row, piece_ids in enumerate(windows):
        input_ids[row, : len(piece_ids)] = piece_ids
        attention_mask[row, : len(piece_ids)] = 1
    return input_ids, attention_mask


def batch_windows(
    lengths: Sequence[int],
    *,
    max_pieces: int,
    max_padding: float | None = None,
    widths: WidthRounding = EXACT_WIDTHS,
) -> list[list[int]]:
    """Group windows of similar length into batches of bounded padded size.

    lengths (Sequence[int]): the length of each window.
    max_pieces (int): the most positions a batch may hold after padding (batch size times its
        longest window). A window longer than this forms a batch of its own.
    max_padding (Optional[float]): if set, also start a new batch when the next window would
        raise the batch's padding above this fraction of its real positions. Training sets it:
        there every padded position costs a forward AND a backward pass, while a few more,
        smaller decoder calls cost little on a CPU.
    widths (WidthRounding): how the decoder call will pad the batch's width; ``max_pieces``
        counts the padded width.
    RETURNS (List[List[int]]): window indices per batch; every index occurs exactly once.
        Windows are taken longest first, so each batch pads to its first window's length and
        neighbours in length share a batch, which keeps padding waste small.
    """
    _check_int("max_pieces", max_pieces, minimum=1)
    sizes = numpy.asarray(lengths, dtype=numpy.int64).reshape(-1)
    # Stable, so that windows of equal length keep their order.
    order = numpy.argsort(-sizes, kind="stable")
    batches: list[list[int]] = []
    batch: list[int] = []
    longest = real = 0
    for index in order.tolist():
        # An empty window still costs a row.
        length = max(int(sizes[index]), 1)
        too_big = (len(batch) + 1) * widths(longest) > max_pieces
        too_padded = max_padding is not None and (len(batch) + 1) * longest - (real + length) > max_padding * (
            real + length
        )
        if batch and (too_big or too_padded):
            batches.append(batch)
            batch = []
        if not batch:
            longest = length
            real = 0
        batch.append(index)
        real += length
    if batch:
        batches.append(batch)
    return batches


def _best_windows(n: int, starts: numpy.ndarray, *, length: int) -> numpy.ndarray:
    """For each piece, the window (index into starts) that maximises min(pieces before it,
    pieces after it) within the window; ties go to the earlier window.

    With all windows of the same length, that minimum is (length - 1 - |2p - centre2|) / 2 with
    centre2 = 2 * start + length - 1, so the best window is the one whose centre is nearest.
    """
    centres2 = 2 * starts + (length - 1)
    positions2 = 2 * numpy.arange(n, dtype=numpy.int64)
    right = numpy.searchsorted(centres2, positions2, side="left")
    right = numpy.minimum(right, len(starts) - 1)
    left = numpy.maximum(right - 1, 0)
    take_left = numpy.abs(positions2 - centres2[left]) <= numpy.abs(positions2 - centres2[right])
    return numpy.where(take_left, left, right)


def _window(pieces: numpy.ndarray, bos_id: int | None, repeat: int = 1) -> numpy.ndarray:
    """One window's int64 piece ids: the BOS (if any), then `pieces` `repeat` times."""
    head = 0 if bos_id is None else 1
    window = numpy.empty(head + repeat * len(pieces), dtype=numpy.int64)
    if bos_id is not None:
        window[0] = bos_id
    window[head:] = numpy.tile(numpy.asarray(pieces, dtype=numpy.int64), repeat)
    return window


def _check_ids(index: int, ids: object) -> numpy.ndarray:
    ids = numpy.asarray(ids)
    if ids.ndim != 1 or not (ids.size == 0 or numpy.issubdtype(ids.dtype, numpy.integer)):
        raise CmllmError(Errors.E044.format(index=index, dtype=ids.dtype, shape=ids.shape))
    return ids


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, numpy.integer)) or value < minimum:
        raise CmllmError(Errors.E040.format(name=name, value=value, why=f"must be an int >= {minimum}"))


def _concat(parts: list[numpy.ndarray]) -> numpy.ndarray:
    if not parts:
        return numpy.zeros(0, dtype=numpy.int64)
    return numpy.concatenate(parts).astype(numpy.int64, copy=False)
