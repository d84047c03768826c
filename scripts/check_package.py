"""Load an installed pipeline package by name in this (fresh) process and annotate a text."""

import sys

import spacy

TEXT = "Barack Obama visited the Google offices in London on Tuesday."


def main(name: str) -> int:
    nlp = spacy.load(name)
    doc = nlp(TEXT)
    print(f"spacy.load({name!r}) -> pipeline {nlp.pipe_names}")
    print("tokens:", " ".join(f"{t.text}/{t.tag_}" for t in doc))
    print("entities:", [(e.text, e.label_) for e in doc.ents])
    print("pos:", " ".join(t.pos_ for t in doc))
    if not all(t.tag_ for t in doc):
        print("some tokens have no tag", file=sys.stderr)
        return 1
    missing = [key for key in ("description", "author", "license") if not nlp.meta.get(key)]
    if missing:
        print(f"the package's meta has no {', '.join(missing)}", file=sys.stderr)
        return 1
    print(f"license: {nlp.meta['license']}; requires: {', '.join(nlp.meta.get('requirements', []))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "en_cmllm_ner"))
