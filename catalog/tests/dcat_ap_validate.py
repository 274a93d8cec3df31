"""Validates a Turtle file against the DCAT-AP 3.0.1 shapes.

Usage: python3 dcat_ap_validate.py <shapes-dir> <data.ttl> [--ranges]
Without --ranges only dcat-ap-SHACL.ttl (mandatory/recommended properties) is used; with it,
ranges.ttl too (classes of values, which need the controlled vocabularies' types).
Prints pySHACL's report; exits 0 when the data conforms, 1 when not.
"""
import sys

import pyshacl
import rdflib

shapes_dir, data_path = sys.argv[1], sys.argv[2]
shapes = rdflib.Graph()
names = ["dcat-ap-SHACL.ttl"] + (["ranges.ttl"] if "--ranges" in sys.argv[3:] else [])
for name in names:
    shapes.parse(f"{shapes_dir}/{name}", format="turtle")
# The 3.0.1 release files name a few property shapes (sh:property) that neither file defines;
# pySHACL stops on such a reference, so the dangling links (not the shapes) are dropped.
SH_PROPERTY = rdflib.URIRef("http://www.w3.org/ns/shacl#property")
SH_PATH = rdflib.URIRef("http://www.w3.org/ns/shacl#path")
dangling = [(s, o) for s, o in shapes.subject_objects(SH_PROPERTY) if (o, SH_PATH, None) not in shapes]
for s, o in dangling:
    shapes.remove((s, SH_PROPERTY, o))
data = rdflib.Graph().parse(data_path, format="turtle")
conforms, _, text = pyshacl.validate(data, shacl_graph=shapes, inference="none")
print(f"shapes: {len(shapes)} triples ({len(dangling)} dangling sh:property links dropped), data: {len(data)} triples")
print(text)
sys.exit(0 if conforms else 1)
