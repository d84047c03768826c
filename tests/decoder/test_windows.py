import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spacy_cmllm.decoder.windows import WidthRounding, batch_windows, pad_windows, plan_windows

BOS = 7


def make_docs(lengths):
    """Docs whose piece ids are unique across all docs, so a window's content shows where
    it starts. Ids start above BOS so that the BOS is never mistaken for a piece."""
    docs, first = [], 100
    for n in lengths:
        docs.append(numpy.arange(first, first + n, dtype=numpy.int64))
        first += n
    return docs


def check_plan(docs, plan, *, window, stride, bos_id):
    offset = 0 if bos_id is None else 1
    lengths = [len(d) for d in docs]
    assert plan.doc_lengths.tolist() == lengths
    assert len(plan.doc_index) == len(plan.windows)
    assert plan.gather_window.dtype == numpy.int64 and plan.gather_position.dtype == numpy.int64
    # One gather entry per piece: every piece is read exactly once.
    assert len(plan.gather_window) == len(plan.gather_position) == sum(lengths)
    for w in plan.windows:
        assert w.dtype == numpy.int64
        if bos_id is not None:
            assert w[0] == bos_id
    all_pieces = numpy.concatenate(docs) if docs else numpy.zeros(0, dtype=numpy.int64)
    piece = 0
    for d, ids in enumerate(docs):
        n = len(ids)
        own = numpy.flatnonzero(plan.doc_index == d)
        if n == 0:
            assert len(own) == 0
            continue
        # The windows of a doc are consecutive, start at 0, stride, 2*stride, ... and the last
        # one ends at the doc's end.
        assert own.tolist() == list(range(own[0], own[0] + len(own)))
        starts = numpy.asarray([plan.windows[k][offset] - ids[0] for k in own])
        size = min(window, n)
        for k, s in zip(own, starts):
            assert plan.windows[k][offset:].tolist() == ids[s : s + size].tolist()
        expected = list(range(0, n - window, stride)) + [n - window] if n > window else [0]
        assert starts.tolist() == expected
        # Brute force: the best window maximises min(context before, context after), and ties
        # go to the earlier window.
        p = numpy.arange(n)[:, None]
        covered = (p >= starts[None, :]) & (p < starts[None, :] + size)
        score = numpy.minimum(p - starts[None, :], starts[None, :] + size - 1 - p)
        score = numpy.where(covered, score, -1)
        best = own[numpy.argmax(score, axis=1)]
        got = plan.gather_window[piece : piece + n]
        assert got.tolist() == best.tolist()
        positions = plan.gather_position[piece : piece + n]
        assert (positions >= offset).all()
        read = numpy.asarray([plan.windows[k][j] for k, j in zip(got, positions)])
        assert read.tolist() == all_pieces[piece : piece + n].tolist()
        piece += n


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=0, max_value=500), max_size=4),
    window=st.integers(min_value=1, max_value=64),
    stride_fraction=st.floats(min_value=0.0, max_value=1.0),
    use_bos=st.booleans(),
)
def test_plan_windows_properties(lengths, window, stride_fraction, use_bos):
    stride = max(1, round(stride_fraction * window))
    bos_id = BOS if use_bos else None
    docs = make_docs(lengths)
    plan = plan_windows(docs, window=window, stride=stride, bos_id=bos_id)
    check_plan(docs, plan, window=window, stride=stride, bos_id=bos_id)


@pytest.mark.parametrize("n,window,stride", [(10, 4, 2), (10, 4, 4), (10, 4, 3), (4, 4, 1), (3, 8, 8), (1, 1, 1)])
@pytest.mark.parametrize("bos_id", [None, BOS])
def test_plan_windows_examples(n, window, stride, bos_id):
    docs = make_docs([n])
    check_plan(
        docs,
        plan_windows(docs, window=window, stride=stride, bos_id=bos_id),
        window=window,
        stride=stride,
        bos_id=bos_id,
    )


def test_plan_windows_worked_example():
    docs = make_docs([10])
    plan = plan_windows(docs, window=4, stride=2, bos_id=BOS)
    # Windows over pieces [0, 4), [2, 6), [4, 8), [6, 10): none is shorter than 4.
    assert [w.tolist() for w in plan.windows] == [
        [BOS, 100, 101, 102, 103],
        [BOS, 102, 103, 104, 105],
        [BOS, 104, 105, 106, 107],
        [BOS, 106, 107, 108, 109],
    ]
    # Pieces at a doc edge can only come from the edge window; inner ones from the window in
    # which they are most central, the earlier one on a tie.
    assert plan.gather_window.tolist() == [0, 0, 0, 1, 1, 2, 2, 3, 3, 3]
    assert plan.gather_position.tolist() == [1, 2, 3, 2, 3, 2, 3, 2, 3, 4]


def test_last_window_is_shifted_not_short():
    plan = plan_windows(make_docs([9]), window=4, stride=4, bos_id=None)
    assert [w.tolist()[0] - 100 for w in plan.windows] == [0, 4, 5]
    assert all(len(w) == 4 for w in plan.windows)


def test_empty_docs_have_no_windows():
    docs = [numpy.zeros(0, dtype=numpy.int64), numpy.asarray([5, 6]), numpy.asarray([], dtype=int)]
    plan = plan_windows(docs, window=4, stride=2, bos_id=BOS)
    assert plan.doc_index.tolist() == [1]
    assert plan.doc_lengths.tolist() == [0, 2, 0]
    assert [w.tolist() for w in plan.windows] == [[BOS, 5, 6]]
    assert plan.gather_window.tolist() == [0, 0]
    assert plan.gather_position.tolist() == [1, 2]
    empty = plan_windows([], window=4, stride=2, bos_id=None)
    assert empty.windows == [] and len(empty.gather_window) == 0 and len(empty.doc_index) == 0


def test_ids_of_other_integer_dtypes():
    plan = plan_windows([numpy.asarray([3, 4, 5], dtype=numpy.int32)], window=2, stride=1, bos_id=0)
    assert [w.tolist() for w in plan.windows] == [[0, 3, 4], [0, 4, 5]]
    assert all(w.dtype == numpy.int64 for w in plan.windows)


@pytest.mark.parametrize(
    "window,stride,bos_id",
    [(0, 1, None), (-1, 1, None), (4, 0, None), (4, 5, None), (2.0, 1, None), (True, 1, None), (4, 2, -1), (4, 2, 1.5)],
)
def test_plan_windows_bad_settings(window, stride, bos_id):
    with pytest.raises(ValueError, match=r"\[E040\]"):
        plan_windows(make_docs([5]), window=window, stride=stride, bos_id=bos_id)


@pytest.mark.parametrize("ids", [numpy.zeros((2, 2), dtype=int), numpy.asarray([1.0, 2.0])])
def test_plan_windows_bad_ids(ids):
    with pytest.raises(ValueError, match=r"\[E044\]"):
        plan_windows([numpy.asarray([1]), ids], window=4, stride=2, bos_id=None)


def test_pad_windows():
    input_ids, mask = pad_windows([numpy.asarray([1, 2, 3]), numpy.asarray([4]), numpy.asarray([5, 6])], pad_id=0)
    assert input_ids.dtype == numpy.int64 and mask.dtype == numpy.int64
    assert input_ids.tolist() == [[1, 2, 3], [4, 0, 0], [5, 6, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 0]]
    input_ids, mask = pad_windows([], pad_id=0)
    assert input_ids.shape == mask.shape == (0, 0)


def test_pad_windows_rounds_the_width_up():
    input_ids, mask = pad_windows([numpy.asarray([1, 2, 3]), numpy.asarray([4])], pad_id=0, widths=WidthRounding(4))
    assert input_ids.tolist() == [[1, 2, 3, 0], [4, 0, 0, 0]]
    assert mask.tolist() == [[1, 1, 1, 0], [1, 0, 0, 0]]
    assert [WidthRounding(32)(w) for w in (0, 1, 32, 33)] == [0, 32, 32, 64]
    assert WidthRounding(1)(33) == 33
    # Never past the widest row a plan can have (full rows already share one shape).
    assert [WidthRounding(32, ceiling=65)(w) for w in (30, 33, 64, 65)] == [32, 64, 64, 65]


def test_batch_windows_counts_rounded_widths_against_max_pieces():
    widths = WidthRounding(32, ceiling=257)
    batches = batch_windows([33] * 10, max_pieces=256, widths=widths)
    assert all(len(b) * widths(33) <= 256 for b in batches) and sum(map(len, batches)) == 10
    assert [len(b) for b in batch_windows([33] * 10, max_pieces=256)] == [7, 3]


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=1, max_value=600), max_size=50),
    max_pieces=st.integers(min_value=1, max_value=2048),
)
def test_batch_windows_properties(lengths, max_pieces):
    batches = batch_windows(lengths, max_pieces=max_pieces)
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(len(lengths)))
    for batch in batches:
        assert batch
        # Only a window longer than max_pieces may exceed it, alone.
        if len(batch) > 1:
            assert len(batch) * max(lengths[i] for i in batch) <= max_pieces
    # Sorted by length, so a batch's windows are neighbours in length.
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    # Greedy: no batch could have taken the first window of the next batch.
    for batch, following in zip(batches, batches[1:]):
        longest = max(lengths[i] for i in batch)
        assert (len(batch) + 1) * max(longest, lengths[following[0]]) > max_pieces


def test_batch_windows_example():
    lengths = [5, 100, 7, 6, 300]
    assert batch_windows(lengths, max_pieces=250) == [[4], [1, 2], [3, 0]]
    assert batch_windows([], max_pieces=10) == []


@pytest.mark.parametrize("max_pieces", [0, -3, 2.5, None])
def test_batch_windows_bad_max_pieces(max_pieces):
    with pytest.raises(ValueError, match=r"\[E040\]"):
        batch_windows([1, 2], max_pieces=max_pieces)


# -- training windows: consecutive, each piece once -------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 90), max_size=5),
    window=st.integers(1, 40),
    with_bos=st.booleans(),
    sentence_gaps=st.lists(st.integers(1, 30), max_size=8),
)
def test_training_windows_cover_every_piece_once(lengths, window, with_bos, sentence_gaps):
    from spacy_cmllm.decoder.windows import plan_training_windows

    docs = make_docs(lengths)
    bos = BOS if with_bos else None
    starts = numpy.cumsum([0] + sentence_gaps)
    plan = plan_training_windows(docs, window=window, bos_id=bos, sentence_starts=[starts] * len(docs))
    offset = 0 if bos is None else 1
    # Windows hold at most `window` pieces and at most one BOS, at their start.
    for w in plan.windows:
        assert 1 <= len(w) - offset <= window
        if bos is not None:
            assert w[0] == bos and (w[1:] != bos).all()
    # The windows of all docs, BOS removed, are the docs' pieces in order, each exactly once.
    body = [w[offset:] for w in plan.windows]
    all_pieces = numpy.concatenate(docs) if docs else numpy.zeros(0, dtype=numpy.int64)
    assert numpy.array_equal(numpy.concatenate(body) if body else all_pieces[:0], all_pieces)
    # Each piece is read from the window that computed it.
    read = numpy.array(
        [plan.windows[w][p] for w, p in zip(plan.gather_window, plan.gather_position)], dtype=numpy.int64
    )
    assert numpy.array_equal(read.reshape(-1), all_pieces)
    # No more windows than the fewest that fit, plus at most one per sentence cut.
    for d, n in enumerate(lengths):
        assert (plan.doc_index == d).sum() <= max(-(-n // window), 0) * 2


def test_training_windows_cut_at_sentence_starts():
    from spacy_cmllm.decoder.windows import plan_training_windows

    docs = make_docs([300])
    plan = plan_training_windows(
        docs, window=128, bos_id=BOS, sentence_starts=[numpy.array([0, 40, 90, 130, 200, 260])]
    )
    starts = [int(w[1]) - 100 for w in plan.windows]
    assert starts == [0, 90, 200]
    # Without sentence starts: an even split, no stub window at the end.
    plan = plan_training_windows(docs, window=128, bos_id=None, sentence_starts=None)
    assert [len(w) for w in plan.windows] == [100, 100, 100]


@settings(max_examples=200, deadline=None)
@given(lengths=st.lists(st.integers(1, 200), min_size=1, max_size=40), max_padding=st.sampled_from([0.0, 0.03, 0.2]))
def test_batches_bound_padding_when_asked(lengths, max_padding):
    batches = batch_windows(lengths, max_pieces=4096, max_padding=max_padding)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        longest = max(lengths[i] for i in b)
        real = sum(lengths[i] for i in b)
        if len(b) > 1:
            assert len(b) * longest - real <= max_padding * real + 1e-9
