#!/usr/bin/env python
"""Build the bundled English-EWT NER + POS corpus in ``assets/ewt/``.

Why this exists: the project needs one openly licensed corpus annotated for both of
its components (tagger and ner) on the same tokens. Universal NER's English-EWT
release gives PER/ORG/LOC entities for the UD English-EWT sentences, and UD gives
UPOS/XPOS for them, but the two are separate downloads and UNER publishes only dev
and test here. This developer tool joins the two on ``sent_id``, re-splits the
joined sentences by document into train/dev/test, and writes small CoNLL-U files
plus a README (provenance and counts) and the CC BY-SA 4.0 LICENSE. It is run once
and its output is committed; re-running it on the same inputs gives identical files.

Usage::

    python scripts/build_ewt_assets.py [--data-dir DATA_DIR] [--out-dir OUT_DIR]

``DATA_DIR`` must contain ``uner_english_ewt/en_ewt-ud-{dev,test}.iob2`` and
``ud_english_ewt/en_ewt-ud-{dev,test}.conllu`` (plus ``LICENSE.txt``) as released
upstream. It defaults to ``../shared/data`` relative to the repository root.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from spacy_cmllm.corpora import Block, CorpusError, check_iob2, entity_labels, read_blocks

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT / ".." / "shared" / "data"
DEFAULT_OUT_DIR = REPO_ROOT / "assets" / "ewt"

UPSTREAM_SPLITS = ("dev", "test")
SPLIT_NAMES = ("train", "dev", "test")
SPLIT_FRACTIONS = {"train": 0.70, "dev": 0.15, "test": 0.15}
ENTITY_TYPES = ("PER", "ORG", "LOC")

# Provenance of the upstream files; written into the generated README.
UD_PROVENANCE = (
    "UD English-EWT, release v2.16 (github.com/UniversalDependencies/UD_English-EWT, "
    "tag `r2.16`, commit `4c89b5833a70aa5ed3a00bad2f23f57992cc7df8`; the files are "
    "byte-identical to those at `master` commit `15d613d8447b3478787d4c278730a1e48a945efb`, "
    "2025-05-10)"
)
UNER_PROVENANCE = (
    "Universal NER v1, UNER_English-EWT (github.com/UniversalNER/UNER_English-EWT, "
    "commit `8ed072de2fd24022cc62458997fe96a8fe191ea4`, 2024-07-29; annotated on UD "
    "English-EWT commit `c491d62a7a0447946ac85b11308083ea61328ece`)"
)


@dataclass
class Sentence:
    """A joined sentence: UD words and tags plus the UNER NER tag of each word."""

    doc_id: str
    sent_id: str
    text: str
    rows: list[list[str]]  # 10 CoNLL-U columns per syntactic word, MISC rewritten
    ner: list[str] = field(default_factory=list)

    @property
    def forms(self) -> list[str]:
        return [row[1] for row in self.rows]


def with_doc_ids(blocks: Iterable[Block], path: Path) -> Iterator[tuple[str, Block]]:
    """Pair every block with its document (``# newdoc id`` is only on the first)."""
    for block in blocks:
        if block.doc_id is None:
            raise CorpusError(path, block.line_no, "sentence before any '# newdoc id'")
        yield block.doc_id, block


def ud_words(block: Block) -> list[list[str]]:
    """Return the syntactic-word rows of a UD sentence with token spacing moved onto words.

    UNER annotates syntactic words (integer IDs), so multiword-token range lines
    (``3-4``) and empty nodes (``8.1``) are dropped. ``SpaceAfter=No`` sits on the
    range line for a multiword token; it is moved to the token's last word and the
    other words get ``SpaceAfter=No`` (the word forms concatenate to the token form),
    so the sentence text stays reconstructable from the words alone. DEPS is set to
    ``_`` because enhanced graphs may point at the dropped empty nodes.
    """
    no_space_after: set[int] = set()
    for row in block.rows:
        if "-" in row[0]:
            first, last = (int(part) for part in row[0].split("-"))
            no_space_after.update(range(first, last))
            if "SpaceAfter=No" in row[9].split("|"):
                no_space_after.add(last)
        elif row[0].isdigit() and "SpaceAfter=No" in row[9].split("|"):
            no_space_after.add(int(row[0]))
    words = []
    for row in block.rows:
        if not row[0].isdigit():
            continue
        misc = "SpaceAfter=No" if int(row[0]) in no_space_after else "_"
        words.append(row[:8] + ["_", misc])
    return words


def sent_id_of(block: Block, path: Path) -> str:
    """The block's ``# sent_id``, on which UD and UNER sentences are joined."""
    sent_id = block.comments.get("sent_id")
    if sent_id is None:
        raise CorpusError(path, block.line_no, "sentence without a '# sent_id = ...' line")
    return sent_id


def read_ud(path: Path) -> dict[str, Sentence]:
    """Read a UD CoNLL-U file into sentences keyed by ``sent_id`` (file order kept)."""
    sentences: dict[str, Sentence] = {}
    for doc_id, block in with_doc_ids(read_blocks(path), path):
        sent_id = sent_id_of(block, path)
        sentences[sent_id] = Sentence(doc_id, sent_id, block.comments.get("text") or "", ud_words(block))
    return sentences


def read_uner(path: Path) -> dict[str, tuple[str, list[str], list[str]]]:
    """Read a UNER ``.iob2`` file into ``sent_id -> (doc_id, forms, IOB2 tags)``."""
    sentences = {}
    for doc_id, block in with_doc_ids(read_blocks(path, n_columns=None), path):
        forms = [row[1] for row in block.rows]
        tags = [row[2] for row in block.rows]
        check_iob2(tags, source=path, lines=block.lines, labels=ENTITY_TYPES)
        sentences[sent_id_of(block, path)] = (doc_id, forms, tags)
    return sentences


def join(
    ud: dict[str, Sentence], uner: dict[str, tuple[str, list[str], list[str]]]
) -> tuple[list[Sentence], list[str]]:
    """Join UNER NER tags onto UD sentences by ``sent_id``, in UD file order.

    UNER was annotated on an older UD commit; a few sentences were re-tokenised
    since, so a sentence only joins when its word forms are identical. Returns the
    joined sentences and a human-readable reason for every skipped UNER sentence.
    """
    joined: list[Sentence] = []
    skipped: list[str] = []
    for sent_id, sentence in ud.items():
        if sent_id not in uner:
            skipped.append(f"{sent_id}: in UD but not in UNER")
            continue
        doc_id, forms, tags = uner[sent_id]
        if doc_id != sentence.doc_id:
            skipped.append(f"{sent_id}: document differs (UD {sentence.doc_id}, UNER {doc_id})")
        elif forms != sentence.forms:
            diff = next(i for i, pair in enumerate(zip(forms + [None], sentence.forms + [None])) if pair[0] != pair[1])
            skipped.append(
                f"{sent_id}: tokens differ from word {diff + 1} "
                f"(UNER {forms[diff : diff + 3]}, UD {sentence.forms[diff : diff + 3]})"
            )
        else:
            sentence.ner = tags
            joined.append(sentence)
    skipped.extend(f"{sent_id}: in UNER but not in UD" for sent_id in uner if sent_id not in ud)
    return joined, skipped


def genre(doc_id: str) -> str:
    """EWT document ids start with their genre (answers, email, newsgroup, reviews, weblog)."""
    return doc_id.split("-", 1)[0]


def stable_key(doc_id: str) -> str:
    """A hash that does not depend on Python's per-process hash seed or on file order."""
    return hashlib.sha256(doc_id.encode("utf-8")).hexdigest()


def split_documents(sentences: list[Sentence]) -> dict[str, str]:
    """Assign every document to train/dev/test; returns ``doc_id -> split``.

    Whole documents are assigned so that no document's context leaks across splits.
    Within each genre the documents are shuffled deterministically (ordered by a
    SHA-256 of their id) and cut at 70 % / 85 % of the genre's sentences, a document
    going to the split that holds its middle sentence. Doing this per genre keeps the
    genre mix of the three splits alike.
    """
    sizes = Counter(s.doc_id for s in sentences)
    by_genre: dict[str, list[str]] = {}
    for doc_id in sizes:
        by_genre.setdefault(genre(doc_id), []).append(doc_id)
    cut_train = SPLIT_FRACTIONS["train"]
    cut_dev = cut_train + SPLIT_FRACTIONS["dev"]
    assignment: dict[str, str] = {}
    for doc_ids in by_genre.values():
        total = sum(sizes[d] for d in doc_ids)
        seen = 0
        for doc_id in sorted(doc_ids, key=stable_key):
            middle = (seen + sizes[doc_id] / 2) / total
            assignment[doc_id] = "train" if middle < cut_train else "dev" if middle < cut_dev else "test"
            seen += sizes[doc_id]
    return assignment


def reconstructed_text(sentence: Sentence) -> str:
    """The sentence text as rebuilt from word forms and ``SpaceAfter=No``."""
    parts = []
    for row in sentence.rows:
        parts.append(row[1])
        if "SpaceAfter=No" not in row[9]:
            parts.append(" ")
    return "".join(parts).strip()


def to_conllu(sentences: list[Sentence]) -> str:
    """Serialise sentences as CoNLL-U with the NER tag in MISC (``NER=B-PER``)."""
    lines: list[str] = []
    previous_doc = None
    for sentence in sentences:
        if sentence.doc_id != previous_doc:
            lines.append(f"# newdoc id = {sentence.doc_id}")
            previous_doc = sentence.doc_id
        lines.append(f"# sent_id = {sentence.sent_id}")
        lines.append(f"# text = {sentence.text}")
        for row, tag in zip(sentence.rows, sentence.ner):
            misc = [f"NER={tag}"] + ([] if row[9] == "_" else [row[9]])
            lines.append("\t".join(row[:9] + ["|".join(misc)]))
        lines.append("")
    return "\n".join(lines) + "\n"


@dataclass
class SplitStats:
    """Counts reported per split in the console output and in the README."""

    documents: int
    sentences: int
    tokens: int
    entities: Counter

    @classmethod
    def of(cls, sentences: list[Sentence]) -> SplitStats:
        return cls(
            documents=len({s.doc_id for s in sentences}),
            sentences=len(sentences),
            tokens=sum(len(s.rows) for s in sentences),
            entities=Counter(label for s in sentences for label in entity_labels(s.ner)),
        )


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def readme_text(
    stats: dict[str, SplitStats],
    inputs: list[Path],
    data_dir: Path,
    n_upstream: int,
    skipped: list[str],
) -> str:
    """The README for ``assets/ewt``: provenance, join, split method and counts."""
    rows = []
    for name in SPLIT_NAMES:
        s = stats[name]
        ents = " / ".join(str(s.entities[label]) for label in ENTITY_TYPES)
        rows.append(f"| {name} | {s.documents} | {s.sentences} | {s.tokens} | {sum(s.entities.values())} | {ents} |")
    total = SplitStats(
        documents=sum(s.documents for s in stats.values()),
        sentences=sum(s.sentences for s in stats.values()),
        tokens=sum(s.tokens for s in stats.values()),
        entities=sum((s.entities for s in stats.values()), Counter()),
    )
    ents = " / ".join(str(total.entities[label]) for label in ENTITY_TYPES)
    rows.append(
        f"| **total** | {total.documents} | {total.sentences} | {total.tokens} | "
        f"{sum(total.entities.values())} | {ents} |"
    )
    checksums = "\n".join(f"| `{p.relative_to(data_dir).as_posix()}` | `{sha256_of(p)}` |" for p in inputs)
    skipped_list = "\n".join(f"   - `{reason}`" for reason in skipped) or "   - none"
    table = "\n".join(rows)
    return f"""# English-EWT with UPOS, XPOS and named entities (train/dev/test)

A joint POS + NER corpus for the `tagger` and `ner` components: the sentences of the
English Web Treebank with gold UPOS and PTB-style XPOS tags from Universal Dependencies
and gold PER / ORG / LOC entities from Universal NER, on identical tokens. The data is
licensed **CC BY-SA 4.0** (see `LICENSE`); it is a derivative of the two corpora below.

## Sources

- **POS**: {UD_PROVENANCE}, files `en_ewt-ud-dev.conllu` and `en_ewt-ud-test.conllu`.
  Silveira et al. (2014), *A Gold Standard Dependency Corpus for English*, LREC 2014.
- **NER**: {UNER_PROVENANCE}, files `en_ewt-ud-dev.iob2` and `en_ewt-ud-test.iob2`.
  Mayhew et al. (2024), *Universal NER: A Gold-Standard Multilingual Named Entity
  Recognition Benchmark*, NAACL 2024, https://aclanthology.org/2024.naacl-long.243/

Only the upstream dev and test portions are used: their {n_upstream:,} sentences are
pooled and re-split by document into train/dev/test.
**The splits here are therefore not the official UD/UNER splits**; do not compare
scores on them with published EWT dev/test results.

Input files used (sha256):

| file | sha256 |
|---|---|
{checksums}

## How the files were made

1. **Join on `sent_id`.** Each UNER sentence is matched with the UD sentence with the
   same `sent_id`, and kept only if both are in the same document and the word forms
   are identical. UNER was annotated on an older UD commit and a few sentences were
   re-tokenised since; these are skipped ({len(skipped)} of {n_upstream:,}):
{skipped_list}
2. **Words, not surface tokens.** UNER labels UD syntactic words, so the files list
   integer-ID words only. Multiword-token lines (`don't` → `do` + `n't`) and empty
   nodes are dropped; the token's `SpaceAfter=No` moves to its last word and its
   other words get `SpaceAfter=No`, so the `# text` line can be rebuilt from the
   word forms. DEPS (column 9) is `_` because enhanced graphs refer to the dropped
   empty nodes; the basic tree (HEAD, DEPREL) is kept. Other MISC annotations are
   dropped. (One word in the source is followed by a non-breaking space,
   `SpacesAfter=\\u00A0`; in the words it is an ordinary space.)
3. **Split by document.** All sentences of a `# newdoc id` document go to the same
   split. Within each genre (the document id prefix: answers, email, newsgroup,
   reviews, weblog) documents are ordered by the SHA-256 of their id and cut at 70 %
   and 85 % of the genre's sentences (a document goes where its middle sentence
   falls), giving about 70 / 15 / 15 % of sentences with a similar genre mix. The
   procedure is deterministic.

## Format

CoNLL-U, UTF-8, one file per split: `train.conllu`, `dev.conllu`, `test.conllu`.
Comments `# newdoc id` (first sentence of each document), `# sent_id`, `# text`.
Ten tab-separated columns `ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC`:
UPOS in column 4, XPOS in column 5, and in MISC (column 10) the entity tag in IOB2
(`NER=B-PER`, `NER=I-ORG`, `NER=O`, ...) followed by `SpaceAfter=No` where the word
is not followed by a space. Every word has a UPOS, an XPOS and an NER tag.

## Counts

Tokens are syntactic words; entities are counted by their `B-` tag (PER / ORG / LOC).

| split | documents | sentences | tokens | entities | PER / ORG / LOC |
|---|---|---|---|---|---|
{table}

## Rebuilding and converting

Rebuild these files (from the repository root; `DATA_DIR` holds the upstream files as
`ud_english_ewt/en_ewt-ud-{{dev,test}}.conllu`, `ud_english_ewt/LICENSE.txt` and
`uner_english_ewt/en_ewt-ud-{{dev,test}}.iob2`; it defaults to `../shared/data`):

    python scripts/build_ewt_assets.py --data-dir DATA_DIR --out-dir assets/ewt

Convert a split to a spaCy DocBin (one Doc per document; `token.tag_` = XPOS,
`token.pos_` = UPOS, sentence starts and `doc.ents` set):

    python scripts/convert_ewt.py assets/ewt/train.conllu corpus/ewt/train.spacy

## License and attribution

CC BY-SA 4.0 (`LICENSE`). If you use this data, cite UD English-EWT (Silveira et al.,
2014; Universal Dependencies) and Universal NER (Mayhew et al., NAACL 2024). Derived
works must carry the same license. The underlying texts come from the LDC English
Web Treebank; some parts are in the public domain, portions may be © 2012 Google
Inc., © 2011 Yahoo! Inc., © 2012 Trustees of the University of Pennsylvania and/or
© other original authors. UD annotations © 2013-2021 The Board of Trustees of The
Leland Stanford Junior University.
"""


LICENSE_HEADER = """English-EWT with UPOS, XPOS and named entities (assets/ewt)

This data is a derivative of, and is distributed under the same license as:

  - Universal Dependencies English Web Treebank (UD English-EWT), release v2.16,
    https://github.com/UniversalDependencies/UD_English-EWT
    Silveira et al. 2014, "A Gold Standard Dependency Corpus for English", LREC 2014.
    Annotations (c) 2013-2021 The Board of Trustees of The Leland Stanford Junior
    University. The underlying texts come from the LDC English Web Treebank; some
    parts are in the public domain; portions may be (c) 2012 Google Inc., (c) 2011
    Yahoo! Inc., (c) 2012 Trustees of the University of Pennsylvania and/or (c) other
    original authors.
  - Universal NER, UNER_English-EWT (v1),
    https://github.com/UniversalNER/UNER_English-EWT
    Mayhew et al. 2024, "Universal NER: A Gold-Standard Multilingual Named Entity
    Recognition Benchmark", NAACL 2024, https://aclanthology.org/2024.naacl-long.243/

Changes: the two corpora were joined on sent_id, restricted to the upstream dev and
test sentences, reduced to the columns described in README.md, and re-split by
document into train/dev/test.

License: Creative Commons Attribution-ShareAlike 4.0 International (CC BY-SA 4.0),
full text below.

"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Join UNER English-EWT NER with UD English-EWT POS and write train/dev/test CoNLL-U assets."
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="directory with uner_english_ewt/ and ud_english_ewt/ (default: ../shared/data from the repo root)",
    )
    parser.add_argument(
        "--out-dir", type=Path, default=DEFAULT_OUT_DIR, help="output directory (default: assets/ewt in the repo)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, SplitStats]:
    args = parse_args(argv)
    data_dir: Path = args.data_dir.resolve()
    out_dir: Path = args.out_dir
    ud_paths = [data_dir / "ud_english_ewt" / f"en_ewt-ud-{s}.conllu" for s in UPSTREAM_SPLITS]
    uner_paths = [data_dir / "uner_english_ewt" / f"en_ewt-ud-{s}.iob2" for s in UPSTREAM_SPLITS]
    license_path = data_dir / "ud_english_ewt" / "LICENSE.txt"
    missing = [p for p in ud_paths + uner_paths + [license_path] if not p.is_file()]
    if missing:
        sys.exit("missing input files:\n  " + "\n  ".join(map(str, missing)))

    joined: list[Sentence] = []
    skipped: list[str] = []
    n_upstream = 0
    for ud_path, uner_path in zip(ud_paths, uner_paths):
        ud, uner = read_ud(ud_path), read_uner(uner_path)
        sentences, reasons = join(ud, uner)
        print(
            f"{uner_path.name}: {len(uner)} UNER / {len(ud)} UD sentences, joined {len(sentences)}, skipped {len(reasons)}"
        )
        n_upstream += len(uner)
        joined.extend(sentences)
        skipped.extend(reasons)
    for reason in skipped:
        print(f"  skipped {reason}")

    bad_text = [s.sent_id for s in joined if reconstructed_text(s).split() != s.text.split()]
    if bad_text:
        sys.exit(f"text not reconstructable from words for {len(bad_text)} sentences, e.g. {bad_text[:3]}")

    assignment = split_documents(joined)
    out_dir.mkdir(parents=True, exist_ok=True)
    stats: dict[str, SplitStats] = {}
    for name in SPLIT_NAMES:
        part = [s for s in joined if assignment[s.doc_id] == name]
        (out_dir / f"{name}.conllu").write_text(to_conllu(part), encoding="utf-8")
        stats[name] = SplitStats.of(part)
        s = stats[name]
        share = 100 * s.sentences / len(joined)
        print(
            f"{name}: {s.documents} docs, {s.sentences} sentences ({share:.1f} %), {s.tokens} tokens, "
            f"entities {dict(sorted(s.entities.items()))}"
        )
    readme = readme_text(stats, ud_paths + uner_paths, data_dir, n_upstream, skipped)
    (out_dir / "README.md").write_text(readme, encoding="utf-8")
    (out_dir / "LICENSE").write_text(LICENSE_HEADER + license_path.read_text(encoding="utf-8"), encoding="utf-8")
    print(f"wrote {', '.join(f'{n}.conllu' for n in SPLIT_NAMES)}, README.md, LICENSE to {out_dir}")
    return stats


if __name__ == "__main__":
    main()
