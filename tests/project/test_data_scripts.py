"""Tests for the data scripts (scripts/build_ewt_assets.py, convert_ewt.py, prepare_conll03.py)
and for the committed EWT assets they produce.

Most tests run on tiny fixture files written to tmp_path. The upstream corpora are read
only if present next to the repository (``../shared/data``); those tests skip otherwise.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from tests.corpora.samples import CONLL03_IOB1_TRAIN, CONLL03_IOB2_TRAIN, EWT_ASSET, SMALL_DOC
from tests.scripts import load_script

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = REPO_ROOT / "scripts"
ASSETS = REPO_ROOT / "assets" / "ewt"
SHARED_DATA = REPO_ROOT / ".." / "shared" / "data"


def load_data_script(name: str) -> ModuleType:
    return load_script(SCRIPTS / f"{name}.py", f"data_script_{name}")


build = load_data_script("build_ewt_assets")
convert = load_data_script("convert_ewt")
conll03 = load_data_script("prepare_conll03")


# --------------------------------------------------------------------------- fixtures

UD_DEV = """\
# newdoc id = weblog-a
# sent_id = weblog-a-0001
# newpar id = weblog-a-p0001
# text = I don't like Paris.
1	I	I	PRON	PRP	_	3	nsubj	3:nsubj	_
2-3	don't	_	_	_	_	_	_	_	_
2	do	do	AUX	VBP	_	4	aux	4:aux	_
3	n't	not	PART	RB	_	4	advmod	4:advmod	_
4	like	like	VERB	VB	_	0	root	0:root	_
5	Paris	Paris	PROPN	NNP	_	4	obj	4:obj	SpaceAfter=No
6	.	.	PUNCT	.	_	4	punct	4:punct	_

# sent_id = weblog-a-0002
# text = John Smith works at Acme Corp.
1	John	John	PROPN	NNP	_	3	nsubj	3:nsubj	_
2	Smith	Smith	PROPN	NNP	_	1	flat	1:flat	_
3	works	work	VERB	VBZ	_	0	root	0:root	_
4	at	at	ADP	IN	_	6	case	6:case	_
5	Acme	Acme	PROPN	NNP	_	6	compound	6:compound	_
6	Corp.	Corp.	PROPN	NNP	_	3	obl	3:obl	_

# newdoc id = email-b
# sent_id = email-b-0001
# text = Ca nt go.
1	Ca	can	AUX	MD	_	3	aux	3:aux	_
2	nt	not	PART	RB	_	3	advmod	3:advmod	_
3	go	go	VERB	VB	_	0	root	0:root	SpaceAfter=No
4	.	.	PUNCT	.	_	3	punct	3:punct	_

# sent_id = email-b-0002
# text = Bob went home and Mary too.
1	Bob	Bob	PROPN	NNP	_	2	nsubj	2:nsubj	_
2	went	go	VERB	VBD	_	0	root	0:root	_
3	home	home	ADV	RB	_	2	advmod	2:advmod	_
4	and	and	CCONJ	CC	_	5	cc	5:cc	_
5	Mary	Mary	PROPN	NNP	_	2	conj	2:conj	_
5.1	went	go	VERB	VBD	_	_	_	2:conj	CopyOf=2
6	too	too	ADV	RB	_	5	advmod	5:advmod	SpaceAfter=No
7	.	.	PUNCT	.	_	2	punct	2:punct	_

"""

UNER_DEV = """\
# newdoc id = weblog-a
# sent_id = weblog-a-0001
# text = I don't like Paris.
1	I	O	-	-
2	do	O	-	-
3	n't	O	-	-
4	like	O	-	-
5	Paris	B-LOC	-	ann
6	.	O	-	-

# sent_id = weblog-a-0002
# text = John Smith works at Acme Corp.
1	John	B-PER	-	ann
2	Smith	I-PER	-	ann
3	works	O	-	-
4	at	O	-	-
5	Acme	B-ORG	-	ann
6	Corp.	I-ORG	-	ann

# newdoc id = email-b
# sent_id = email-b-0001
# text = Can t go.
1	Can	O	-	-
2	t	O	-	-
3	go	O	-	-
4	.	O	-	-

# sent_id = email-b-0002
# text = Bob went home and Mary too.
1	Bob	B-PER	-	ann
2	went	O	-	-
3	home	O	-	-
4	and	O	-	-
5	Mary	B-PER	-	ann
6	too	O	-	-
7	.	O	-	-
"""


def ud_uner_doc(doc_id: str, n_sents: int) -> tuple[str, str]:
    """A synthetic document of ``n_sents`` two-word sentences in both formats."""
    ud, uner = [f"# newdoc id = {doc_id}"], [f"# newdoc id = {doc_id}"]
    for i in range(1, n_sents + 1):
        head = [f"# sent_id = {doc_id}-{i:04d}", "# text = Anna sings"]
        ud += head + [
            "1\tAnna\tAnna\tPROPN\tNNP\t_\t2\tnsubj\t2:nsubj\t_",
            "2\tsings\tsing\tVERB\tVBZ\t_\t0\troot\t0:root\t_",
            "",
        ]
        uner += head + ["1\tAnna\tB-PER\t-\tann", "2\tsings\tO\t-\t-", ""]
    return "\n".join(ud) + "\n", "\n".join(uner) + "\n"


@pytest.fixture
def ewt_data_dir(tmp_path: Path) -> Path:
    """Upstream-shaped UD + UNER dirs: the hand-written dev above, a synthetic test split."""
    data = tmp_path / "data"
    (data / "ud_english_ewt").mkdir(parents=True)
    (data / "uner_english_ewt").mkdir(parents=True)
    (data / "ud_english_ewt" / "en_ewt-ud-dev.conllu").write_text(UD_DEV, encoding="utf-8")
    (data / "uner_english_ewt" / "en_ewt-ud-dev.iob2").write_text(UNER_DEV, encoding="utf-8")
    docs = [ud_uner_doc(f"{genre}-{i}", 1 + i % 4) for genre in ("answers", "reviews") for i in range(20)]
    (data / "ud_english_ewt" / "en_ewt-ud-test.conllu").write_text("".join(d[0] for d in docs), encoding="utf-8")
    (data / "uner_english_ewt" / "en_ewt-ud-test.iob2").write_text("".join(d[1] for d in docs), encoding="utf-8")
    (data / "ud_english_ewt" / "LICENSE.txt").write_text("Attribution-ShareAlike 4.0 International\n", encoding="utf-8")
    return data


def read_conllu_sentences(path: Path) -> list[dict]:
    """Independent minimal reader used to check outputs: doc id, sent id, text, word rows."""
    sentences, current, doc_id = [], None, None
    for line in path.read_text(encoding="utf-8").split("\n"):
        if not line:
            if current:
                sentences.append(current)
            current = None
            continue
        if current is None:
            current = {"doc_id": doc_id, "sent_id": None, "text": None, "rows": []}
        if line.startswith("# newdoc id = "):
            doc_id = current["doc_id"] = line[len("# newdoc id = ") :]
        elif line.startswith("# sent_id = "):
            current["sent_id"] = line[len("# sent_id = ") :]
        elif line.startswith("# text = "):
            current["text"] = line[len("# text = ") :]
        elif not line.startswith("#"):
            current["rows"].append(line.split("\t"))
    return sentences


def misc(row: list[str], key: str) -> str | None:
    return dict(item.split("=", 1) for item in row[9].split("|") if "=" in item).get(key)


def iob_spans(tags: list[str]) -> list[tuple[int, int, str]]:
    """(start, end, label) of each entity in a valid IOB2 sequence."""
    spans = []
    for i, tag in enumerate(tags):
        if tag.startswith("B-"):
            spans.append([i, i + 1, tag[2:]])
        elif tag.startswith("I-"):
            spans[-1][1] = i + 1
    return [tuple(span) for span in spans]


# --------------------------------------------------------------------------- build_ewt_assets


def test_build_joins_moves_mwt_spacing_and_skips_mismatches(ewt_data_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    stats = build.main(["--data-dir", str(ewt_data_dir), "--out-dir", str(out)])
    printed = capsys.readouterr().out
    assert "en_ewt-ud-dev.iob2: 4 UNER / 4 UD sentences, joined 3, skipped 1" in printed
    assert "email-b-0001: tokens differ from word 1" in printed

    sentences = [s for name in ("train", "dev", "test") for s in read_conllu_sentences(out / f"{name}.conllu")]
    by_id = {s["sent_id"]: s for s in sentences}
    assert "email-b-0001" not in by_id
    assert len(sentences) == 3 + sum(1 + i % 4 for i in range(20)) * 2
    assert sum(s.sentences for s in stats.values()) == len(sentences)

    first = by_id["weblog-a-0001"]
    assert [r[1] for r in first["rows"]] == ["I", "do", "n't", "like", "Paris", "."]
    assert [r[0] for r in first["rows"]] == ["1", "2", "3", "4", "5", "6"]
    assert [r[9] for r in first["rows"]] == [
        "NER=O",
        "NER=O|SpaceAfter=No",
        "NER=O",
        "NER=O",
        "NER=B-LOC|SpaceAfter=No",
        "NER=O",
    ]
    assert first["text"] == "I don't like Paris."
    assert all(len(r) == 10 and r[8] == "_" for s in sentences for r in s["rows"])
    # The empty node 5.1 is dropped, the basic tree is kept.
    last = by_id["email-b-0002"]
    assert [(r[0], r[1], r[3], r[4], r[6]) for r in last["rows"]][4:6] == [
        ("5", "Mary", "PROPN", "NNP", "2"),
        ("6", "too", "ADV", "RB", "5"),
    ]
    assert [misc(r, "NER") for r in by_id["weblog-a-0002"]["rows"]] == ["B-PER", "I-PER", "O", "O", "B-ORG", "I-ORG"]

    readme = (out / "README.md").read_text(encoding="utf-8")
    assert "skipped (1 of 104)" in readme
    assert (out / "LICENSE").read_text(encoding="utf-8").endswith("Attribution-ShareAlike 4.0 International\n")


def test_build_keeps_documents_whole_and_is_deterministic(ewt_data_dir: Path, tmp_path: Path) -> None:
    build.main(["--data-dir", str(ewt_data_dir), "--out-dir", str(tmp_path / "a")])
    build.main(["--data-dir", str(ewt_data_dir), "--out-dir", str(tmp_path / "b")])
    for name in ("train.conllu", "dev.conllu", "test.conllu", "README.md", "LICENSE"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    split_of_doc: dict[str, set[str]] = {}
    for name in ("train", "dev", "test"):
        for sentence in read_conllu_sentences(tmp_path / "a" / f"{name}.conllu"):
            split_of_doc.setdefault(sentence["doc_id"], set()).add(name)
    assert len(split_of_doc) == 42
    assert all(len(splits) == 1 for splits in split_of_doc.values())
    assert {next(iter(s)) for s in split_of_doc.values()} == {"train", "dev", "test"}


def test_split_documents_is_about_70_15_15_per_genre() -> None:
    sentences = [
        build.Sentence(doc_id=f"{genre}-{d}", sent_id=f"{genre}-{d}-{s}", text="", rows=[])
        for genre in ("answers", "email", "reviews")
        for d in range(100)
        for s in range(1 + d % 7)
    ]
    assignment = build.split_documents(sentences)
    assert assignment == build.split_documents(list(reversed(sentences)))  # order-independent
    for genre in ("answers", "email", "reviews"):
        counts = Counter(assignment[s.doc_id] for s in sentences if s.doc_id.startswith(genre))
        total = sum(counts.values())
        assert abs(counts["train"] / total - 0.70) < 0.03
        assert abs(counts["dev"] / total - 0.15) < 0.03
        assert abs(counts["test"] / total - 0.15) < 0.03


def test_build_rejects_invalid_uner_iob(ewt_data_dir: Path, tmp_path: Path) -> None:
    path = ewt_data_dir / "uner_english_ewt" / "en_ewt-ud-dev.iob2"
    path.write_text(UNER_DEV.replace("2\tSmith\tI-PER", "2\tSmith\tI-ORG"), encoding="utf-8")
    with pytest.raises(ValueError, match=r"en_ewt-ud-dev.iob2:14: invalid IOB2 sequence: I-ORG after B-PER"):
        build.main(["--data-dir", str(ewt_data_dir), "--out-dir", str(tmp_path / "out")])


# --------------------------------------------------------------------------- convert_ewt


def test_convert_ewt_builds_one_doc_per_document(tmp_path: Path) -> None:
    source = tmp_path / "in.conllu"
    source.write_text(EWT_ASSET, encoding="utf-8")
    docs = convert.main([str(source), str(tmp_path / "out" / "x.spacy")])
    assert len(docs) == 2
    first, second = docs
    assert first.text == "I don't like New York. Ann met Bob. Hi "
    assert [t.text for t in first] == ["I", "do", "n't", "like", "New", "York", ".", "Ann", "met", "Bob", ".", "Hi"]
    assert [t.tag_ for t in first][:7] == ["PRP", "VBP", "RB", "VB", "NNP", "NNP", "."]
    assert [t.pos_ for t in first][:7] == ["PRON", "AUX", "PART", "VERB", "PROPN", "PROPN", "PUNCT"]
    assert [s.text for s in first.sents] == ["I don't like New York.", "Ann met Bob.", "Hi"]
    assert [(e.text, e.label_) for e in first.ents] == [("New York", "LOC"), ("Ann", "PER"), ("Bob", "PER")]
    assert [(e.text, e.label_) for e in second.ents] == [("IBM", "ORG")]

    import spacy
    from spacy.tokens import DocBin

    reloaded = list(DocBin().from_disk(tmp_path / "out" / "x.spacy").get_docs(spacy.blank("en").vocab))
    assert [d.text for d in reloaded] == [d.text for d in docs]
    assert [[(e.start, e.end, e.label_) for e in d.ents] for d in reloaded] == [
        [(4, 6, "LOC"), (7, 8, "PER"), (9, 10, "PER")],
        [(0, 1, "ORG")],
    ]


def test_convert_ewt_groups_n_sentences_within_a_document(tmp_path: Path) -> None:
    source = tmp_path / "in.conllu"
    source.write_text(EWT_ASSET, encoding="utf-8")
    docs = convert.main([str(source), str(tmp_path / "x.spacy"), "--n-sents-per-doc", "2"])
    assert [len(list(d.sents)) for d in docs] == [2, 1, 1]
    assert [d.text for d in docs] == ["I don't like New York. Ann met Bob. ", "Hi ", "IBM rocks "]


# --------------------------------------------------------------------------- prepare_conll03


def write_layout(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory


def check_conll03_train(docs) -> None:
    assert len(docs) == 2
    first, second = docs
    assert first.text == "EU rejects German call . Peter Blackburn "
    assert [s.text for s in first.sents] == ["EU rejects German call .", "Peter Blackburn"]
    assert [t.tag_ for t in first] == ["NNP", "VBZ", "JJ", "NN", ".", "NNP", "NNP"]
    assert [(e.text, e.label_) for e in first.ents] == [("EU", "ORG"), ("German", "MISC"), ("Peter Blackburn", "PER")]
    assert [(e.text, e.label_) for e in second.ents] == [
        ("Ann", "PER"),
        ("Bob Smith", "PER"),
        ("New York", "LOC"),
        ("Acme", "ORG"),
    ]
    assert [t.tag_ for t in second][-2:] == ["(", "NN|SYM"]
    assert [t.ent_iob_ for t in second] == ["B", "B", "I", "O", "B", "I", "B", "O", "O"]
    # Chunks (column 3) as IOB2 spans in doc.spans["chunks"], IOB1 converted like NER.
    assert [(s.text, s.label_) for s in first.spans["chunks"]] == [
        ("EU", "NP"),
        ("rejects", "VP"),
        ("German call", "NP"),
        ("Peter Blackburn", "NP"),
    ]


def test_prepare_conll03_reads_iob1_original_layout(tmp_path: Path, capsys) -> None:
    source = write_layout(
        tmp_path / "orig", {"eng.train": CONLL03_IOB1_TRAIN, "eng.testa": SMALL_DOC, "eng.testb": SMALL_DOC * 2}
    )
    result = conll03.main([str(source), str(tmp_path / "out")])
    assert "(IOB1)" in capsys.readouterr().out
    check_conll03_train(result["train"])
    assert [len(result["dev"]), len(result["test"])] == [1, 2]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["dev.spacy", "test.spacy", "train.spacy"]


def test_prepare_conll03_reads_iob2_layout_identically(tmp_path: Path) -> None:
    iob2_small = SMALL_DOC.replace("I-NP I-LOC", "B-NP B-LOC")
    write_layout(tmp_path / "orig", {"eng.train": CONLL03_IOB1_TRAIN, "eng.testa": SMALL_DOC, "eng.testb": SMALL_DOC})
    write_layout(tmp_path / "conv", {"train.txt": CONLL03_IOB2_TRAIN, "valid.txt": iob2_small, "test.txt": iob2_small})
    conll03.main([str(tmp_path / "orig"), str(tmp_path / "out1")])
    result = conll03.main([str(tmp_path / "conv"), str(tmp_path / "out2")])
    check_conll03_train(result["train"])
    for split in ("train", "dev", "test"):
        assert (tmp_path / "out1" / f"{split}.spacy").read_bytes() == (
            tmp_path / "out2" / f"{split}.spacy"
        ).read_bytes()


def test_prepare_conll03_layout_detection_and_strict_iob2(tmp_path: Path) -> None:
    with pytest.raises(conll03.ConversionError, match="found neither layout"):
        conll03.main([str(tmp_path), str(tmp_path / "out")])
    bad = CONLL03_IOB2_TRAIN.replace("Blackburn NNP I-NP I-PER", "Blackburn NNP I-NP I-LOC")
    write_layout(tmp_path / "conv", {"train.txt": bad, "valid.txt": "", "test.txt": ""})
    with pytest.raises(conll03.ConversionError, match=r"train.txt:10: invalid IOB2 sequence: I-LOC after B-PER"):
        conll03.main([str(tmp_path / "conv"), str(tmp_path / "out")])


def conll03_doc(*sentences: str) -> str:
    """A -DOCSTART- document in the converted layout; each sentence is a string of words, all O."""
    lines = ["-DOCSTART- -X- -X- O", ""]
    for sentence in sentences:
        lines += [f"{word} NN B-NP O" for word in sentence.split()] + [""]
    return "\n".join(lines) + "\n"


def test_prepare_conll03_cuts_training_documents_at_sentence_boundaries(tmp_path: Path, capsys) -> None:
    train = (
        conll03_doc("a b", "c d", "e f g", "h")  # 2 + 2 <= 4, then 3 (+1 <= 4)
        + conll03_doc("one two three four five six", "x")  # longer than 4: a Doc of its own
        + conll03_doc("p q")  # never joined with the previous document's last sentence
    )
    dev = conll03_doc("a", "b", "c", "d", "e")
    write_layout(tmp_path / "conv", {"train.txt": train, "valid.txt": dev, "test.txt": dev})
    result = conll03.main([str(tmp_path / "conv"), str(tmp_path / "out"), "--train-doc-words", "4"])
    printed = capsys.readouterr().out
    docs = result["train"]
    assert [[s.text for s in doc.sents] for doc in docs] == [
        ["a b", "c d"],
        ["e f g", "h"],
        ["one two three four five six"],
        ["x"],
        ["p q"],
    ]
    assert all(doc[0].is_sent_start for doc in docs)
    assert "train: train.txt -> " in printed and "5 docs, 7 sentences, 17 tokens" in printed
    assert "(cut from 3 documents)" in printed
    # dev and test stay whole documents, however long.
    assert [len(result["dev"]), len(list(result["dev"][0].sents))] == [1, 5]
    assert [len(result["test"]), len(list(result["test"][0].sents))] == [1, 5]
    assert "dev: valid.txt -> " in printed and "1 docs, 5 sentences" in printed

    whole = conll03.main([str(tmp_path / "conv"), str(tmp_path / "whole")])
    assert len(whole["train"]) == 3
    assert [t.text for d in whole["train"] for t in d] == [t.text for d in docs for t in d]
    with pytest.raises(SystemExit):
        conll03.main([str(tmp_path / "conv"), str(tmp_path / "bad"), "--train-doc-words", "-1"])


# --------------------------------------------------------------------------- committed assets


def readme_counts() -> dict[str, tuple[int, int, int, int, list[int]]]:
    """Parse the counts table of assets/ewt/README.md: docs, sentences, tokens, entities, PER/ORG/LOC."""
    counts = {}
    pattern = re.compile(r"^\| (train|dev|test) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) / (\d+) / (\d+) \|$")
    for line in (ASSETS / "README.md").read_text(encoding="utf-8").splitlines():
        match = pattern.match(line)
        if match:
            numbers = [int(n) for n in match.groups()[1:]]
            counts[match.group(1)] = (*numbers[:4], numbers[4:])
    return counts


def test_committed_ewt_assets_are_consistent() -> None:
    readme = readme_counts()
    assert set(readme) == {"train", "dev", "test"}
    docs_seen: dict[str, str] = {}
    sent_ids: set[str] = set()
    total_sentences = 0
    for name in ("train", "dev", "test"):
        sentences = read_conllu_sentences(ASSETS / f"{name}.conllu")
        total_sentences += len(sentences)
        for sentence in sentences:
            assert docs_seen.setdefault(sentence["doc_id"], name) == name, (
                f"document {sentence['doc_id']} in two splits"
            )
            assert sentence["sent_id"] not in sent_ids, f"duplicate sent_id {sentence['sent_id']}"
            assert sentence["sent_id"].startswith(sentence["doc_id"])
            sent_ids.add(sentence["sent_id"])
            rows = sentence["rows"]
            assert [r[0] for r in rows] == [str(i) for i in range(1, len(rows) + 1)]
            for row in rows:
                assert len(row) == 10 and row[3] not in ("", "_") and row[4] not in ("", "_")
                assert re.fullmatch(r"O|[BI]-(PER|ORG|LOC)", misc(row, "NER") or ""), row
            rebuilt = "".join(r[1] + ("" if misc(r, "SpaceAfter") == "No" else " ") for r in rows)
            assert rebuilt.split() == sentence["text"].split()
        tags = [misc(r, "NER") for s in sentences for r in s["rows"]]
        entities = Counter(t[2:] for t in tags if t.startswith("B-"))
        expected = (
            len({s["doc_id"] for s in sentences}),
            len(sentences),
            sum(len(s["rows"]) for s in sentences),
            sum(entities.values()),
            [entities["PER"], entities["ORG"], entities["LOC"]],
        )
        assert readme[name] == expected, name
    assert 4000 < total_sentences <= 4078
    shares = {name: readme[name][1] / total_sentences for name in readme}
    assert abs(shares["train"] - 0.70) < 0.03 and abs(shares["dev"] - 0.15) < 0.03


def test_converting_committed_dev_matches_the_source() -> None:
    source = read_conllu_sentences(ASSETS / "dev.conllu")
    docs = convert.convert(ASSETS / "dev.conllu")
    assert len(docs) == len({s["doc_id"] for s in source})
    doc_sentences = [sent for doc in docs for sent in doc.sents]
    assert len(doc_sentences) == len(source)
    for sent, expected in zip(doc_sentences, source):
        rows = expected["rows"]
        assert sent.text.split() == expected["text"].split()
        assert [t.text for t in sent] == [r[1] for r in rows]
        assert [t.tag_ for t in sent] == [r[4] for r in rows]
        assert [t.pos_ for t in sent] == [r[3] for r in rows]
        tags = [misc(r, "NER") for r in rows]
        got = [(e.start - sent.start, e.end - sent.start, e.label_) for e in sent.ents]
        assert got == iob_spans(tags)
    assert sum(len(d.ents) for d in docs) == readme_counts()["dev"][3]


@pytest.mark.skipif(
    not (SHARED_DATA / "uner_english_ewt" / "en_ewt-ud-dev.iob2").is_file(), reason="upstream EWT data not available"
)
def test_committed_ewt_assets_are_reproducible(tmp_path: Path) -> None:
    build.main(["--data-dir", str(SHARED_DATA), "--out-dir", str(tmp_path)])
    for name in ("train.conllu", "dev.conllu", "test.conllu", "README.md", "LICENSE"):
        digest = hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
        assert digest == hashlib.sha256((ASSETS / name).read_bytes()).hexdigest(), name
