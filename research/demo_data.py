"""The small offline demo corpus in SpERT JSON format (``assets/demo``).

Short English sentences made from templates with people (Peop), organisations
(Org) and places (Loc), and the relations Work_For (Peop -> Org), Live_In
(Peop -> Loc) and OrgBased_In (Org -> Loc), in CoNLL04's type names. Some
templates mention entities without any relation (strong negatives for the
relation classifier) and some sentences have no entity at all.

The output is deterministic for a given seed; assets/demo/ holds the committed
output (train.json, dev.json, types.json). The names in HELD_OUT never appear in
it: :mod:`research.demo` uses them to show that the model
generalizes.
"""

import json
import random
from pathlib import Path
from typing import Dict, List, Tuple

FIRST_NAMES = """Anna Ben Carla David Elena Farid Grace Hugo Ines Jonas Kira Liam Maya Nadia
Oscar Paula Rafael Sofia Tariq Uma Victor Wendy Yusuf Zoe Amir Bianca Chen Daria Emil
Fatima Gustav Hana Ivan Julia Kofi Lena Mateo Nora Olga Pedro Aiko Bruno Chiara Dmitri
Esther Felix Greta Hamid Irene Jakub Kenji Leila Marco Nkechi Otto Pilar Quentin Rosa
Stefan Teresa Ulrich Vera Walter Ximena Yara Zainab""".split()

LAST_NAMES = """Smith Garcia Müller Rossi Kowalski Tanaka Okafor Dubois Jensen Silva Novak
Haddad Larsen Moreau Fischer Costa Ivanova Kim Brennan Schmidt Lindqvist Mensah Petrov
Duarte Weber Nakamura Ortiz Berg Conti Adeyemi Horvat Keller Lopez Rahman Sato Varga
Abara Bauer Castillo Dlamini Eriksen Ferreira Gallagher Hoffmann Iyer Jovanovic Kaur
Lambert Mwangi Nilsen O'Brien Popescu Quinn Romero Sandoval Takahashi Uchenna Vogel
Whitaker Yilmaz Zhang""".split()

ORGANISATIONS = [
    "Acme Corp",
    "Globex",
    "Initech",
    "Northwind Traders",
    "Vandelay Industries",
    "Umbrella Pharma",
    "Stark Logistics",
    "Hooli",
    "Wayne Shipping",
    "Soylent Foods",
    "Cyberdyne Systems",
    "Tyrell Labs",
    "Oceanic Airlines",
    "Pied Piper",
    "Dunder Mifflin",
    "Massive Dynamic",
    "Gringotts Bank",
    "Monarch Media",
    "Blue Sun Energy",
    "Aperture Science",
    "Nakatomi Trading",
    "Wonka Industries",
    "Zenith Insurance",
    "Polar Motors",
    "Redline Studios",
    "the United Nations",
    "the Red Cross",
    "Greenpeace",
    "the World Bank",
    "Reuters",
    "First Federal Bank",
    "Atlas Shipping Group",
    "Silver Lake Partners",
    "North Star Capital",
    "Greenfield Medical Center",
    "Orion Software",
    "Delta Freight",
    "Summit Health",
    "Ironwood Mining",
    "Coastal Power Company",
    "Lighthouse Books",
    "Evergreen Foods",
    "Falcon Aerospace",
    "Marble Arch Records",
    "Sunrise Hotels",
    "Quantum Robotics",
    "the Daily Herald",
    "the National Museum",
    "Pioneer Steel Works",
    "Crescent Telecom",
]

PLACES = [
    "Paris",
    "London",
    "Berlin",
    "Madrid",
    "Rome",
    "Lisbon",
    "Vienna",
    "Oslo",
    "Stockholm",
    "Warsaw",
    "Prague",
    "Dublin",
    "Athens",
    "Cairo",
    "Nairobi",
    "Lagos",
    "Tokyo",
    "Seoul",
    "Mumbai",
    "Sydney",
    "Toronto",
    "Chicago",
    "Boston",
    "Denver",
    "Lima",
    "Bogota",
    "New York",
    "San Francisco",
    "Buenos Aires",
    "Cape Town",
    "Hong Kong",
    "Los Angeles",
    "Bergen",
    "Tartu",
    "Porto",
    "Leipzig",
    "Graz",
    "Arequipa",
    "Mombasa",
    "Ghent",
    "Malmo",
    "Aarhus",
    "Brno",
    "Cluj",
    "Plovdiv",
    "Split",
    "Bilbao",
    "Nantes",
    "Utrecht",
    "Lucerne",
    "Kumasi",
    "Dodoma",
    "Sapporo",
    "Busan",
    "Pune",
    "Hobart",
    "Halifax",
    "Tucson",
    "Boise",
    "Cusco",
    "Rosario",
    "Port Elizabeth",
    "Salt Lake City",
    "Rio de Janeiro",
    "Saint Louis",
    "Baton Rouge",
    "Ho Chi Minh City",
]

# Never used in the generated corpus; research.demo uses these.
HELD_OUT = {
    "people": ["Priya Raman", "Tomasz Nowak", "Ingrid Solberg", "Kwame Asante"],
    "organisations": ["Kestrel Labs", "Bluewater Analytics", "Harbor Freight Lines"],
    "places": ["Valparaiso", "Tampere", "Kraków", "Santa Fe"],
}

YEARS = [str(y) for y in range(1990, 2024)]
JOBS = ["an engineer", "a manager", "a lawyer", "an analyst", "a designer", "a chemist", "a pilot"]

# A template is a list of pieces: plain words, or slots "{P}", "{P2}", "{O}",
# "{O2}", "{L}", "{L2}" (filled with an entity), "{YEAR}" or "{JOB}" (filled
# with plain words). Relations name the slots of their head and tail.
TEMPLATES: List[Tuple[str, List[Tuple[str, str, str]]]] = [
    ("{P} works for {O} .", [("Work_For", "P", "O")]),
    ("{P} has worked for {O} since {YEAR} .", [("Work_For", "P", "O")]),
    ("{P} joined {O} in {YEAR} .", [("Work_For", "P", "O")]),
    ("{P} is {JOB} at {O} .", [("Work_For", "P", "O")]),
    ("{O} hired {P} as {JOB} .", [("Work_For", "P", "O")]),
    ("{P} , a spokesman for {O} , declined to comment .", [("Work_For", "P", "O")]),
    ("According to {P} of {O} , sales rose sharply .", [("Work_For", "P", "O")]),
    ("{P} , the chief executive of {O} , resigned on Monday .", [("Work_For", "P", "O")]),
    ("{P} lives in {L} .", [("Live_In", "P", "L")]),
    ("{P} moved to {L} in {YEAR} .", [("Live_In", "P", "L")]),
    ("{P} is a resident of {L} .", [("Live_In", "P", "L")]),
    ("{P} , who grew up in {L} , still lives there .", [("Live_In", "P", "L")]),
    ("{O} is based in {L} .", [("OrgBased_In", "O", "L")]),
    ("{O} is headquartered in {L} .", [("OrgBased_In", "O", "L")]),
    ("The {L} company {O} reported a loss .", [("OrgBased_In", "O", "L")]),
    ("{O} , a firm based in {L} , was founded in {YEAR} .", [("OrgBased_In", "O", "L")]),
    (
        "{P} , {JOB} at {O} , lives in {L} .",
        [("Work_For", "P", "O"), ("Live_In", "P", "L")],
    ),
    (
        "{O} , headquartered in {L} , hired {P} .",
        [("OrgBased_In", "O", "L"), ("Work_For", "P", "O")],
    ),
    (
        "{P} , who lives in {L} , is the director of {O} .",
        [("Live_In", "P", "L"), ("Work_For", "P", "O")],
    ),
    (
        "The {L} office of {O} is run by {P} .",
        [("OrgBased_In", "O", "L"), ("Work_For", "P", "O")],
    ),
    (
        "{P} left {O} in {L2} and joined {O2} .",
        [("Work_For", "P", "O2"), ("OrgBased_In", "O", "L2")],
    ),
    (
        "{P} and {P2} both work for {O} in {L} .",
        [("Work_For", "P", "O"), ("Work_For", "P2", "O"), ("OrgBased_In", "O", "L")],
    ),
    # Entities without relations.
    ("{P} met {P2} in {L} last week .", []),
    ("{P} visited {L} and {L2} .", []),
    ("{O} and {O2} signed a deal .", []),
    ("{P} criticised {O} in an interview .", []),
    ("Flights from {L} to {L2} were cancelled .", []),
    ("{P} read a report about {O} .", []),
    # No entities.
    ("The weather was cold and windy .", []),
    ("Sales grew by ten percent last year .", []),
    ("The meeting was postponed until Friday .", []),
    ("Prices fell again in the second quarter .", []),
]

TYPES = {
    "entities": {
        "Loc": {"short": "Loc", "verbose": "Location"},
        "Org": {"short": "Org", "verbose": "Organization"},
        "Peop": {"short": "Peop", "verbose": "People"},
    },
    "relations": {
        "Work_For": {"short": "Work", "verbose": "Work for", "symmetric": False},
        "OrgBased_In": {"short": "OrgBI", "verbose": "Organization based in", "symmetric": False},
        "Live_In": {"short": "Live", "verbose": "Live in", "symmetric": False},
    },
}

SLOT_TYPES = {"P": "Peop", "P2": "Peop", "O": "Org", "O2": "Org", "L": "Loc", "L2": "Loc"}


def _person(rng: random.Random) -> str:
    if rng.random() < 0.15:  # sometimes only a surname, as in news text
        return rng.choice(["Mr.", "Ms.", "Dr."]) + " " + rng.choice(LAST_NAMES)
    return rng.choice(FIRST_NAMES) + " " + rng.choice(LAST_NAMES)


def _fill(rng: random.Random, slot: str, used: Dict[str, str]) -> str:
    kind = slot[0]
    while True:
        if kind == "P":
            value = _person(rng)
        elif kind == "O":
            value = rng.choice(ORGANISATIONS)
        else:
            value = rng.choice(PLACES)
        if value not in used.values():
            return value


def make_record(rng: random.Random, template: str, relations: List[Tuple[str, str, str]], orig_id: str) -> Dict:
    """One SpERT JSON record from a template.

    rng (random.Random): Picks the names, years and jobs.
    template (str): Words and slots (see TEMPLATES).
    relations (List[Tuple[str, str, str]]): (type, head slot, tail slot).
    orig_id (str): The record's id.
    RETURNS (Dict): {"tokens", "entities", "relations", "orig_id"}.
    """
    tokens: List[str] = []
    entities: List[Dict] = []
    slot_entity: Dict[str, int] = {}
    used: Dict[str, str] = {}
    for piece in template.split():
        if piece.startswith("{") and piece.endswith("}"):
            slot = piece[1:-1]
            if slot == "YEAR":
                tokens.append(rng.choice(YEARS))
                continue
            if slot == "JOB":
                tokens.extend(rng.choice(JOBS).split())
                continue
            value = _fill(rng, slot, used)
            used[slot] = value
            words = value.split()
            # "the United Nations", "Dr. Weber": the article or title is not
            # part of the entity
            if words[0] in ("the", "Mr.", "Ms.", "Dr."):
                tokens.append(words[0])
                words = words[1:]
            slot_entity[slot] = len(entities)
            entities.append({"type": SLOT_TYPES[slot], "start": len(tokens), "end": len(tokens) + len(words)})
            tokens.extend(words)
        else:
            tokens.append(piece)
    if tokens and tokens[0][0].islower():
        tokens[0] = tokens[0][0].upper() + tokens[0][1:]
    rels = [{"type": label, "head": slot_entity[head], "tail": slot_entity[tail]} for label, head, tail in relations]
    return {"tokens": tokens, "entities": entities, "relations": rels, "orig_id": orig_id}


def make_split(rng: random.Random, n: int, prefix: str) -> List[Dict]:
    """``n`` records from random templates, with ids ``{prefix}-{i}``."""
    records = []
    for i in range(n):
        template, relations = rng.choice(TEMPLATES)
        records.append(make_record(rng, template, relations, f"{prefix}-{i}"))
    return records


def check_held_out(records: List[Dict]) -> None:
    """Fail if a held-out name occurs in the generated data (words such as
    "Labs" may occur as parts of other names)."""
    text = " " + " ".join(" ".join(r["tokens"]) for r in records) + " "
    for names in HELD_OUT.values():
        for name in names:
            if f" {name} " in text:
                raise ValueError(f"the held-out name {name!r} occurs in the demo data")


def write_demo_data(output: Path, n_train: int = 500, n_dev: int = 100, seed: int = 13) -> Dict[str, int]:
    """Generate the corpus and write train.json, dev.json and types.json.

    output (Path): The folder (created if missing).
    n_train (int): Training sentences. n_dev (int): Dev sentences.
    seed (int): The random seed; the same seed gives the same files.
    RETURNS (Dict[str, int]): Counts: "train", "dev", "entities" and
        "relations" (of the training split).
    RAISES: ValueError if a held-out name occurs in the generated data.
    """
    rng = random.Random(seed)
    train = make_split(rng, n_train, "demo-train")
    dev = make_split(rng, n_dev, "demo-dev")
    check_held_out(train + dev)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in (("train.json", train), ("dev.json", dev), ("types.json", TYPES)):
        # one record per line: small diffs, still a JSON list
        if isinstance(data, list):
            text = "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in data) + "\n]\n"
        else:
            text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        (out / name).write_text(text, encoding="utf8")
    return {
        "train": len(train),
        "dev": len(dev),
        "entities": sum(len(r["entities"]) for r in train),
        "relations": sum(len(r["relations"]) for r in train),
    }
