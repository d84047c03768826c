"""Small corpus files shared by the reader tests and the data-script tests."""

EWT_ASSET = """\
# newdoc id = doc-1
# sent_id = doc-1-0001
# text = I don't like New York.
1	I	I	PRON	PRP	_	4	nsubj	_	NER=O
2	do	do	AUX	VBP	_	4	aux	_	NER=O|SpaceAfter=No
3	n't	not	PART	RB	_	4	advmod	_	NER=O
4	like	like	VERB	VB	_	0	root	_	NER=O
5	New	New	PROPN	NNP	_	6	compound	_	NER=B-LOC
6	York	York	PROPN	NNP	_	4	obj	_	NER=I-LOC|SpaceAfter=No
7	.	.	PUNCT	.	_	4	punct	_	NER=O

# sent_id = doc-1-0002
# text = Ann met Bob.
1	Ann	Ann	PROPN	NNP	_	2	nsubj	_	NER=B-PER
2	met	meet	VERB	VBD	_	0	root	_	NER=O
3	Bob	Bob	PROPN	NNP	_	2	obj	_	NER=B-PER|SpaceAfter=No
4	.	.	PUNCT	.	_	2	punct	_	NER=O

# sent_id = doc-1-0003
# text = Hi
1	Hi	hi	INTJ	UH	_	0	root	_	NER=O

# newdoc id = doc-2
# sent_id = doc-2-0001
# text = IBM rocks
1	IBM	IBM	PROPN	NNP	_	2	nsubj	_	NER=B-ORG
2	rocks	rock	VERB	VBZ	_	0	root	_	NER=O
"""

CONLL03_IOB1_TRAIN = """\
-DOCSTART- -X- O O

EU NNP I-NP I-ORG
rejects VBZ I-VP O
German JJ I-NP I-MISC
call NN I-NP O
. . O O

Peter NNP I-NP I-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- O O

Ann NNP I-NP I-PER
Bob NNP I-NP B-PER
Smith NNP I-NP I-PER
in IN I-PP O
New NNP I-NP I-LOC
York NNP I-NP I-LOC
Acme NNP I-NP I-ORG
( ( O O
foo NN|SYM I-NP O


"""

# The same data in the converted layout: IOB2 tags, other DOCSTART line, no final newline.
CONLL03_IOB2_TRAIN = """\
-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O
. . O O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- -X- O

Ann NNP B-NP B-PER
Bob NNP I-NP B-PER
Smith NNP I-NP I-PER
in IN B-PP O
New NNP B-NP B-LOC
York NNP I-NP I-LOC
Acme NNP I-NP B-ORG
( ( O O
foo NN|SYM B-NP O"""

SMALL_DOC = "-DOCSTART- -X- O O\n\nParis NNP I-NP I-LOC\n\n"
