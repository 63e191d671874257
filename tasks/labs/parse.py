"""Read a lab test name the way the naming systems write it: analyte, specimen, property, method.

Names arrive in several systems at once:

- LOINC long common names: "Component [Property] in System by Method"
  ("Eosinophils/100 leukocytes in Blood by Manual count", "Glucose [Mass/volume] in Serum or
  Plasma --2 hours post meal").
- LOINC short names and their display forms: "ALT SerPl-cCnc", "Hgb Bld-mCnc",
  "RBC Auto (Bld) [#/Vol]".
- EHR flowsheet labels with suffixes: "ALT SerPl Qn", "Sodium Bld Qn", "Eosinophils % Bld Man",
  "Glucose ER-IS", "Vancomycin Levl".
- Report abbreviations: "TOT BILI", "TOT PROT", "Malb", "Glu", "S. Creatinine".

``parse_name`` takes any of them apart into the analyte's canonical words (what is measured) and
the qualifiers that pick among sibling codes. The catalog's own names go through the same parser,
so two names agree on the analyte exactly when their word sets agree: near-homonyms
(procalcitonin/prolactin, creatine/creatinine, CD23/CD3, anion gap 3/4) never meet, whatever
their string distance.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

# ----------------------------------------------------------------------------------- specimens

# Specimen classes. "blood" is whole blood stated explicitly (Bld, WB, "whole blood"); a bare
# "blood" in a consumer name ("Blood Urea", "Blood Sugar") usually means serum and is "blood_any".
SERUM = "serum"
BLOOD = "blood"
BLOOD_ANY = "blood_any"
ARTERIAL = "arterial"
VENOUS = "venous"
CAPILLARY = "capillary"
URINE = "urine"
BODY_FLUIDS = frozenset(
    {"csf", "pleural", "peritoneal", "synovial", "body_fluid", "stool", "bone_marrow", "other"}
)
WHOLE_BLOOD_KINDS = frozenset({BLOOD, ARTERIAL, VENOUS, CAPILLARY})
BLOOD_FAMILY = frozenset({SERUM, "plasma", *WHOLE_BLOOD_KINDS})

# Multi-word phrases first (longest first); matched on the cleaned, space-joined text.
_SPECIMEN_PHRASES: tuple[tuple[str, str], ...] = (
    ("serum plasma or blood", SERUM),
    ("serum or plasma or blood", SERUM),
    ("serum or plasma", SERUM),
    ("platelet poor plasma", SERUM),
    ("whole blood", BLOOD),
    ("arterial blood", ARTERIAL),
    ("venous blood", VENOUS),
    ("mixed venous blood", VENOUS),
    ("capillary blood", CAPILLARY),
    ("cord blood", BLOOD),
    ("urine sediment", URINE),
    ("cerebral spinal fluid", "csf"),
    ("cerebrospinal fluid", "csf"),
    ("spinal fluid", "csf"),
    ("pleural fluid", "pleural"),
    ("peritoneal fluid", "peritoneal"),
    ("ascitic fluid", "peritoneal"),
    ("synovial fluid", "synovial"),
    ("joint fluid", "synovial"),
    ("body fluid", "body_fluid"),
    ("bone marrow", "bone_marrow"),
    ("24 hour urine", "urine_24h"),
    ("24 hour ur", "urine_24h"),
)
_SPECIMEN_WORDS: dict[str, str] = {
    "serum": SERUM,
    "ser": SERUM,
    "sr": SERUM,
    "plasma": SERUM,
    "plas": SERUM,
    "pl": SERUM,  # LOINC short names: "Pl" is plasma
    "serpl": SERUM,
    "serplbld": SERUM,
    "ppp": SERUM,
    "bld": BLOOD,
    "wb": BLOOD,
    "blda": ARTERIAL,
    "arterial": ARTERIAL,
    "art": ARTERIAL,
    "bldv": VENOUS,
    "venous": VENOUS,
    "bldc": CAPILLARY,
    "capillary": CAPILLARY,
    "bldco": BLOOD,
    "blood": BLOOD_ANY,
    "ur": URINE,
    "urn": URINE,
    "urine": URINE,
    "urinary": URINE,
    "spot": URINE,
    "ursed": URINE,
    "csf": "csf",
    "pleural": "pleural",
    "plr": "pleural",
    "peritoneal": "peritoneal",
    "periton": "peritoneal",
    "ascites": "peritoneal",
    "ascitic": "peritoneal",
    "synovial": "synovial",
    "snv": "synovial",
    "joint": "synovial",
    "stool": "stool",
    "stl": "stool",
    "feces": "stool",
    "fecal": "stool",
    "marrow": "bone_marrow",
    "fluid": "body_fluid",
    "control": "control",
    "bdy": "body_fluid",
    "fld": "body_fluid",
}
# Most specific wins when a name states two ("Urine sediment ... Blood" is urine).
_SPECIMEN_PRIORITY = (
    "control",
    "urine_24h",
    "csf",
    "pleural",
    "peritoneal",
    "synovial",
    "stool",
    "bone_marrow",
    URINE,
    ARTERIAL,
    VENOUS,
    CAPILLARY,
    "body_fluid",
    SERUM,
    BLOOD,
    BLOOD_ANY,
)

# ---------------------------------------------------------------------------------- properties

COUNT = "count"
FRACTION = "fraction"
CONCENTRATION = "concentration"
VOLUME = "volume"
PRESENCE = "presence"
RATIO = "ratio"
PRESSURE = "pressure"
TIME = "time"
QUANTITATIVE = "quantitative"  # "Qn": any measured property, never a presence test

# LOINC property (bracketed long-name form or short-name abbreviation) -> property class.
_PROPERTY_TEXT: dict[str, str] = {
    "mass/volume": CONCENTRATION,
    "mass/vol": CONCENTRATION,
    "moles/volume": CONCENTRATION,
    "moles/vol": CONCENTRATION,
    "enzymatic activity/volume": CONCENTRATION,
    "units/volume": CONCENTRATION,
    "arbitrary concentration": CONCENTRATION,
    "#/volume": COUNT,
    "#/vol": COUNT,
    "#/area": COUNT,
    "number": COUNT,
    "entitic volume": VOLUME,
    "entitic vol": VOLUME,
    "entitic mass": "entitic_mass",
    "volume fraction": FRACTION,
    "mass fraction": FRACTION,
    "number fraction": FRACTION,
    "moles fraction": FRACTION,
    "presence": PRESENCE,
    "presence or threshold": PRESENCE,
    "ratio": RATIO,
    "mass ratio": RATIO,
    "molar ratio": RATIO,
    "moles ratio": RATIO,
    "enzymatic activity ratio": RATIO,
    "partial pressure": PRESSURE,
    "time": TIME,
    "titer": "titer",
    "type": "nominal",
    "identifier": "nominal",
    "interpretation": "nominal",
    "appearance": "nominal",
    "specific gravity": "specific_gravity",
    "ph": "ph",
    "volume rate/area": "volume_rate",
    "mass/time": "rate",
    "moles/time": "rate",
    "volume/time": "rate",
    "enzymatic activity/time": "rate",
    "# ratio": RATIO,
    "multiple of the median": "mom",
    "log #/volume": COUNT,
    "volume rate": "volume_rate",
}
_PROPERTY_ABBREVIATIONS: dict[str, str] = {
    "mcnc": CONCENTRATION,
    "scnc": CONCENTRATION,
    "ccnc": CONCENTRATION,
    "acnc": CONCENTRATION,
    "ncnc": COUNT,
    "naric": COUNT,
    "vfr": FRACTION,
    "nfr": FRACTION,
    "mfr": FRACTION,
    "sfr": FRACTION,
    "cfr": FRACTION,
    "entvol": VOLUME,
    "pr": PRESENCE,
    "prthr": PRESENCE,
    "mrto": RATIO,
    "srto": RATIO,
    "rto": RATIO,
    "ratio": RATIO,
    "ppres": PRESSURE,
    "titr": "titer",
    "prid": "nominal",
}
_SCALE_WORDS: dict[str, str | None] = {
    "qn": QUANTITATIVE,
    "ql": PRESENCE,
    "ord": PRESENCE,
    "nom": None,
}
# Classes that measure the same thing in another unit (siblings the unit converts between).
_COMPATIBLE: dict[str, frozenset[str]] = {
    QUANTITATIVE: frozenset(
        {
            CONCENTRATION,
            COUNT,
            FRACTION,
            VOLUME,
            RATIO,
            PRESSURE,
            TIME,
            "rate",  # "Creatinine 24H Ur Qn" in mg/24 h: an excretion rate is measured too
            "volume_rate",
            "entitic_mass",
        }
    ),
    FRACTION: frozenset({RATIO}),
    RATIO: frozenset({FRACTION}),
}


def properties_conflict(query: str | None, test: str | None) -> bool:
    if query is None or test is None or query == test:
        return False
    return test not in _COMPATIBLE.get(query, frozenset()) and query not in _COMPATIBLE.get(
        test, frozenset()
    )


# ------------------------------------------------------------------------------------- methods

_METHOD_PHRASES: tuple[tuple[str, str], ...] = (
    ("automated count", "automated"),
    ("manual count", "manual"),
    ("test strip", "strip"),
    ("light microscopy", "microscopy"),
    ("direct assay", "direct"),
    ("immunofixation", "immunofixation"),
    ("electrophoresis", "electrophoresis"),
)
_METHOD_WORDS: dict[str, str] = {
    "auto": "automated",
    "automated": "automated",
    "automatic": "automated",
    "man": "manual",
    "manual": "manual",
    "calc": "calculated",
    "calculated": "calculated",
    "calculation": "calculated",
    "computed": "calculated",
    "strip": "strip",
    "dipstick": "strip",
    "elp": "electrophoresis",
    "electrophoresis": "electrophoresis",
    "ife": "immunofixation",
    "immunofixation": "immunofixation",
    "microscopy": "microscopy",
    "microscopic": "microscopy",
    "glucomtr": "glucometer",
    "glucometer": "glucometer",
    "est": "estimated",
    "estimated": "estimated",
}
# Methods that measure a different thing than a plain assay of the same component: a name that
# states one of these never takes a code without it.
_DISTINCT_METHODS = frozenset({"electrophoresis", "immunofixation"})
# Methods that do not contradict a code that states no method.
_SOFT_METHODS = frozenset(
    {"automated", "calculated", "estimated", "strip", "microscopy", "glucometer"}
)


def methods_conflict(query: str | None, test: str | None) -> bool:
    if query is None or query == test:
        return False
    if test is None:
        return query in _DISTINCT_METHODS or query == "manual"
    if query in ("calculated", "estimated") and test.startswith("other:"):
        return False  # "Estimated GFR" is the formula-based code, whatever formula it names
    if query in _SOFT_METHODS and test in _SOFT_METHODS:
        # Analyzers calculate some counts (hematocrit from MCV x RBC): both are machine results.
        return {query, test} == {"automated", "strip"} or "microscopy" in (query, test)
    return True


# ------------------------------------------------------------------------------ analyte words


def _word_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Method jargon and fillers: they never tell two catalog tests apart ("direct", "calculated",
# "total", "free" and "absolute" do, so they are deliberately not here).
FILLER_WORDS = _word_set(
    """
    method methods jaffe jaffes kinetic enzymatic colorimetric colorimetry photometric photometry
    spectrophotometry spectrophotometric clia cmia eclia ecl elisa eia hplc ise immunoassay
    immunoturbidimetric immunoturbidimetry turbidimetric turbidimetry nephelometry nephelometric
    uricase oxidase hexokinase biuret bcg bromocresol diazo dpd szasz gpo pap chod god pod gopod
    impedance cytometry analyzer cyanmethemoglobin sls test tests level levels estimation value
    values result results assay by of the for in on measurement measured quantitative
    """
)
# Words the parse drops besides: scale, site tags, counting words (the property is read from
# "#" and the unit, never from "count"), how the specimen was kept (refrigerated, frozen).
NOISE_WORDS = FILLER_WORDS | _word_set(
    """
    levl lvl at quant count counts cell cells lab csh er is istat poc point care
    concentration conc homogeneous urease gldh arsenazo specimen
    refrigerated refrig frozen stored bedside molar
    """
)

# Word-level synonyms (applied after plural folding): spellings of one analyte word.
_WORD_SYNONYMS: dict[str, tuple[str, ...]] = {
    "hgb": ("hemoglobin",),
    "hb": ("hemoglobin",),
    "hct": ("hematocrit",),
    "plt": ("platelet",),
    "thrombocyte": ("platelet",),
    "rbc": ("erythrocyte",),
    "wbc": ("leukocyte",),
    "nrbc": ("nucleated", "erythrocyte"),
    "bili": ("bilirubin",),
    "tot": ("total",),
    "prot": ("protein",),
    "glu": ("glucose",),
    "gluc": ("glucose",),
    "chol": ("cholesterol",),
    "creat": ("creatinine",),
    "eos": ("eosinophil",),
    "eosin": ("eosinophil",),
    "lymph": ("lymphocyte",),
    "lymphs": ("lymphocyte",),
    "mono": ("monocyte",),
    "neut": ("neutrophil",),
    "neutro": ("neutrophil",),
    "baso": ("basophil",),
    "co2": ("carbon", "dioxide"),
    "malb": ("microalbumin",),
    "ast": ("aspartate", "aminotransferase"),
    "alt": ("alanine", "aminotransferase"),
    "tsh": ("thyrotropin",),
    "trig": ("triglyceride",),
    "sensitive": ("sensitivity",),
    "hr": ("hour",),
    "hrs": ("hour",),
    "postprandial": ("post", "prandial"),
    "antibody": ("ab",),
    "antibodie": ("ab",),
    # LOINC short-name abbreviations (the LOINC users' guide lists them).
    "cholest": ("cholesterol",),
    "trigl": ("triglyceride",),
    "hdlc": ("hdl", "cholesterol"),
    "ldlc": ("ldl", "cholesterol"),
    "bilirub": ("bilirubin",),
    "dir": ("direct",),
    "indir": ("indirect",),
    "actvty": ("activity",),
    "choles": ("cholesterol",),
    "progest": ("progesterone",),
    "epineph": ("epinephrine",),
    "norepineph": ("norepinephrine",),
    "metaneph": ("metanephrine",),
    "normetaneph": ("normetanephrine",),
    "unsat": ("unsaturated",),
    "hbv": ("hepatitis", "b", "virus"),
    "hcv": ("hepatitis", "c", "virus"),
    "hav": ("hepatitis", "a", "virus"),
    "hiv1": ("hiv", "1"),
    "hiv2": ("hiv", "2"),
    "a1at": ("alpha", "1", "antitrypsin"),
    "sens": ("sensitivity",),
    "po2": ("oxygen",),
    "pco2": ("carbon", "dioxide"),
    "transaminase": ("aminotransferase",),
    "ion": ("ionized",),  # "Calcium-Ion"
    "polys": ("neutrophil",),  # polymorphonuclear leukocytes
    "phosphorus": ("phosphate",),  # LOINC's component for inorganic phosphorus
    "phosphorous": ("phosphate",),
    "hco3": ("bicarbonate",),
    "probnp": ("pro", "bnp"),  # "proBNP" as "Pro BNP"
    "ntprobnp": ("nt", "pro", "bnp"),
    "alb": ("albumin",),
    "cr": ("creatinine",),  # "Alb/Cr", "BUN/Cr": reports never mean chromium by it
    # European and older names of the aminotransferases (GPT/ALAT is ALT, GOT/ASAT is AST).
    "gpt": ("alanine", "aminotransferase"),
    "alat": ("alanine", "aminotransferase"),
    "got": ("aspartate", "aminotransferase"),
    "asat": ("aspartate", "aminotransferase"),
    "5hiaa": ("5", "hiaa"),
    "tct": ("thrombin", "time"),  # thrombin clotting time
    "keto": ("ketone",),
    "grav": ("gravity",),  # "Sp Grav"
    "neutrophilic": ("neutrophil",),  # "Neutrophilic band forms"
    "eosinophilic": ("eosinophil",),
    "basophilic": ("basophil",),
    # Cholecalciferol is vitamin D3, ergocalciferol D2: their 25-hydroxy forms are LOINC's.
    "hydroxycholecalciferol": ("hydroxyvitamin", "d3"),
    "hydroxyergocalciferol": ("hydroxyvitamin", "d2"),
    # International nonproprietary names of drugs whose LOINC component uses the US name.
    "paracetamol": ("acetaminophen",),
    "ciclosporin": ("cyclosporine",),
    "cyclosporin": ("cyclosporine",),
}
# Words that state a property besides naming the analyte: pO2 is oxygen's partial pressure.
_WORD_PROPERTIES: dict[str, str] = {"po2": PRESSURE, "pco2": PRESSURE}
# Words that state only the property, never the analyte ("ppres" stands for "partial pressure"
# written out, see _PHRASE_SYNONYMS).
_PROPERTY_ONLY_WORDS: dict[str, str] = {"fr": FRACTION, "ppres": PRESSURE}
# Phrases folded before tokenizing ("red blood cells" must not leave a specimen word behind).
_PHRASE_SYNONYMS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"\bise (?:in)?direct\b", " "),
        # A reference table's population after a dash is no part of the analyte.
        (
            r"\s[\u2013\u2014-]\s+(?:(?:males?|females?|men|women|adults?|children|"
            r"post-?menopausal|pre-?menopausal|and|or)[\s,]*)+$",
            " ",
        ),
        (r"\bfull blood\b", " whole blood "),  # British for whole blood
        (r"\bepi cells?\b", " epithelial cells "),
        (r"\bfobt\b", " fecal occult "),  # the fecal occult blood test names its specimen
        # A count's field written into the name ("Casts UA/LPF") is its unit, not a ratio.
        (r"/\s*[lh]pf\b", " "),
        # LOINC's "Coagulation factor IX activity actual/normal" is what reports call
        # "Factor IX activity": actual/normal is the property (percent of normal).
        (r"\bactivity actual\s*/\s*normal\b", " activity percent "),
        (r"\bcoagulation factor\b", " factor "),
        # "Oxygen partial pressure": the property, stated in words rather than in brackets.
        (r"\bpartial pressure(?: of)?\b", " ppres "),
        (r"\br-ur\b", " urine "),  # a random urine
        # A unit written into the name ("Calcium-Ion Ser mg/dL") is no analyte word.
        (
            r"(?<![a-z0-9])(?:mg|g|ug|mcg|ng|pg|mmol|umol|mcmol|nmol|pmol|meq|iu|miu|u)"
            r"\s*/\s*(?:dl|l|ml|24\s*h|d)(?![a-z0-9])",
            " ",
        ),
        (r"\bred blood cells?\b", " erythrocyte "),
        (r"\bred cells?\b", " erythrocyte "),
        (r"\bwhite blood cells?\b", " leukocyte "),
        (r"\bwhite cells?\b", " leukocyte "),
        # European reports name the cells in full: "Eosinophil granulocytes" are eosinophils.
        (r"\b(eosinophil|neutrophil|basophil)(?:ic)? granulocytes?\b", r" \1 "),
        (r"\bcarbon dioxide\b", " carbon dioxide "),
        (r"\b24\s*-?\s*(?:h|hr|hrs|hour|hours)\b", " 24 hour "),
    )
)
# Real analytes the catalog lacks that sit one edit from a catalog word: never "corrected".
KNOWN_OTHER_ANALYTES = _word_set(
    """
    cysteine cystine methanol ethanol cortisone cortisol estrone estriol inulin
    nitrate nitrite sulfite sulfate citrate lactose lactase glucagon tyramine histidine
    histamine aldolase amylose creatine
    """
)
# Words that state a count per volume ("Lymphocyte number" is the absolute count).
ABSOLUTE_WORDS = frozenset({"absolute", "abs", "number", "num"})
PERCENT_WORDS = frozenset({"percent", "pct", "percentage"})

_BRITISH_TO_US: tuple[tuple[str, str], ...] = (
    ("haem", "hem"),
    ("aemia", "emia"),
    ("leuco", "leuko"),
    ("oestr", "estr"),
    ("colour", "color"),
    ("sulph", "sulf"),
    ("foet", "fet"),
    ("caerul", "cerul"),
    ("faec", "fec"),
    ("ionised", "ionized"),
    ("luteinising", "luteinizing"),
    ("glycosylated", "glycated"),
    ("glycosilated", "glycated"),
    ("oesophag", "esophag"),
    ("litre", "liter"),
    ("analyser", "analyzer"),
    ("paed", "ped"),
)

_BRACKET = re.compile(r"\[([^\]]*)\]")
_SHORT_PROPERTY = re.compile(r"\b([a-z0-9]+)-(" + "|".join(_PROPERTY_ABBREVIATIONS) + r")\b")
_CHALLENGE = re.compile(r"\s--\s*(.+)$")
_BY_METHOD = re.compile(r"\sby\s+(.+)$")
_PREFIX = re.compile(r"^\s*(s|sr|ser)\s*\.\s*|^\s*(u)\s*\.\s*")
_DOTTED = re.compile(r"\b(?:[a-z0-9]\.){1,}[a-z0-9]\b\.?")
_PER_HUNDRED = re.compile(r"(?:/|\bper\s+)\s*100\s+([a-z ]+?)(?=$|[,;()\[\]]|\s(?:in|of|by)\s)")
_NON_WORD = re.compile(r"[^a-z0-9%#]+")
_OF_TOTAL = re.compile(r"/\s*([a-z][a-z0-9 ]*?)\.total\b")
_IN_BLOOD = re.compile(r"\s(?:in|of)\s+blood\b(?!\s+cells?)")
_UA_SUFFIX = re.compile(r"(?<=[a-z0-9])[\s-]+ua\b")


def _urinalysis_suffix(text: str) -> str:
    """'Sp Grav UA', 'pH-UA': a trailing UA names the urinalysis, so the specimen is urine.

    Alone or after a specimen word ("UA", "Serum UA") it stays the uric acid abbreviation.
    """
    match = _UA_SUFFIX.search(text)
    if match is None:
        return text
    before = [t for t in _NON_WORD.split(text[: match.start()]) if t]
    if all(t in _SPECIMEN_WORDS or t in NOISE_WORDS for t in before):
        return text
    return f"{text[: match.start()]} urine {text[match.end() :]}"


@dataclass(frozen=True)
class ParsedName:
    """What a name says: the analyte's words and the qualifiers that pick a sibling code."""

    words: frozenset[str]  # canonical analyte words ("bilirubin", "total"); "/" joins -> "ratio"
    specimen: str | None
    property: str | None
    method: str | None
    denominator: str | None  # "leukocyte" for "/100 WBC", "erythrocyte" for "/100 RBC"
    digits: frozenset[str]  # analyte words carrying a digit ("cd23", "a1c", "3")


# Greek letters as reports print them ("β2-microglobulin", "γ-GT"), spelled as catalogs do.
_GREEK = {"α": "alpha", "β": "beta", "γ": "gamma", "δ": "delta", "κ": "kappa", "λ": "lambda"}


# A Greek letter after a locant is stereochemistry that LOINC components leave out
# ("17α-Hydroxyprogesterone" is 17-Hydroxyprogesterone); before a digit it names the analyte.
_STEREO_LOCANT = re.compile(r"(\d)[αβ]")


def ascii_lower(text: str) -> str:
    if text.isascii():
        return text.lower()
    text = _STEREO_LOCANT.sub(r"\1", text.replace("µ", "u").replace("μ", "u"))
    for letter, word in _GREEK.items():
        text = text.replace(letter, f" {word} ").replace(letter.upper(), f" {word} ")
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()


def americanize(text: str) -> str:
    for british, american in _BRITISH_TO_US:
        text = text.replace(british, american)
    return text


def fold_plural(word: str) -> str:
    if len(word) >= 5 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) >= 5 and word.endswith("s") and not word.endswith(("ss", "us", "is", "os")):
        return word[:-1]
    return word


def canonical_words(word: str) -> tuple[str, ...]:
    folded = fold_plural(word)
    return _WORD_SYNONYMS.get(word) or _WORD_SYNONYMS.get(folded) or (folded,)


def _clean(raw: str) -> str:
    text = americanize(ascii_lower(raw)).replace("'", "").replace("’", "")

    def undot(match: re.Match[str]) -> str:
        token = match.group(0)
        return token if re.fullmatch(r"[0-9.]+", token) else token.replace(".", "")

    text = _DOTTED.sub(undot, text)
    # "S. Creatinine" / "Sr. Iron" mean serum; "U. Albumin" means urine.
    return _PREFIX.sub(lambda m: " urine " if m.group(2) else " serum ", text, count=1)


def _take_property(text: str) -> tuple[str, str | None]:
    found: str | None = None
    for inner in _BRACKET.findall(text):
        key = " ".join(inner.split()).strip()
        if key in _PROPERTY_TEXT:
            found = _PROPERTY_TEXT[key]
    text = _BRACKET.sub(lambda m: " " if m.group(1).strip() in _PROPERTY_TEXT else m.group(0), text)
    return text, found


def _take_specimen(text: str) -> tuple[str, set[str]]:
    found: set[str] = set()
    padded = f" {_NON_WORD.sub(' ', text)} "
    for phrase, specimen in _SPECIMEN_PHRASES:
        if f" {phrase} " in padded:
            found.add(specimen)
            padded = padded.replace(f" {phrase} ", " ")
    return padded, found


def _take_methods(text: str) -> tuple[str, set[str]]:
    found: set[str] = set()
    for phrase, method in _METHOD_PHRASES:
        if phrase in text:
            found.add(method)
            text = text.replace(phrase, " ")
    return text, found


_SLASH_PAIR = re.compile(r"\b([a-z][a-z0-9]*)\s*/\s*([a-z][a-z0-9]*)\b")


def _one_spelling(match: re.Match[str]) -> str:
    first, second = match.group(1), match.group(2)
    # "Mass/mass" is a mass ratio: one word twice is a ratio, two spellings of one are not.
    same = first != second and canonical_words(first) == canonical_words(second)
    return first if same else match.group(0)


@lru_cache(maxsize=65536)
def parse_name(raw: str) -> ParsedName:
    """Parse one test name (any naming system) into analyte words and qualifiers."""
    text = _clean(raw).replace("ser-pl", "serpl").replace("serplas", "serpl")
    # LOINC display names put the system in parentheses: "RDW Auto (RBC) [Entitic vol]".
    text = text.replace("(rbc)", " bld ").replace("(bld)", " bld ")
    properties: set[str] = set()
    text, bracket_property = _take_property(text)
    if bracket_property:
        properties.add(bracket_property)
    challenge = ""
    if match := _CHALLENGE.search(text):  # "--2 hours post meal" is part of the analyte
        challenge, text = match.group(1), text[: match.start()]
    methods: set[str] = set()
    if match := _BY_METHOD.search(text):
        method_text, text = match.group(1), text[: match.start()]
        method_text, phrase_methods = _take_methods(method_text)
        methods |= phrase_methods
        method_words = [w for w in _NON_WORD.split(method_text) if w and w not in NOISE_WORDS]
        methods |= {_METHOD_WORDS[w] for w in method_words if w in _METHOD_WORDS}
        other = sorted(w for w in method_words if w not in _METHOD_WORDS)
        if other and not methods:
            # A method LOINC names but this parser does not class ("High sensitivity method",
            # "CKD-EPI 2021") is part of the code's identity: kept verbatim, matched exactly.
            methods.add("other:" + " ".join(other))
    # The short-name property first: "Direct Assay-mCnc" keeps its method phrase whole.
    for short in _SHORT_PROPERTY.finditer(text):
        properties.add(_PROPERTY_ABBREVIATIONS[short.group(2)])
    text = _SHORT_PROPERTY.sub(lambda m: f" {m.group(1)} ", text)
    text, phrase_methods = _take_methods(text)
    methods |= phrase_methods
    denominator: str | None = None
    if match := _PER_HUNDRED.search(text):
        parts = [w for part in match.group(1).split() for w in canonical_words(part)]
        denominator = " ".join(w for w in parts if w not in NOISE_WORDS) or "cell"
        properties.add(FRACTION)
        text = text[: match.start()] + " " + text[match.end() :]
    if match := _OF_TOTAL.search(text):
        # "Hemoglobin A1c/Hemoglobin.total": a fraction of the total, the analyte is HbA1c.
        parts = [w for part in match.group(1).split() for w in canonical_words(part)]
        denominator = denominator or " ".join(parts)
        properties.add(FRACTION)
        text = text[: match.start()] + " " + text[match.end() :]
    for pattern, replacement in _PHRASE_SYNONYMS:
        text = pattern.sub(replacement, text)
    # A LOINC system phrase "in Blood" / "of Blood" is whole blood, not a consumer's "blood".
    text = _IN_BLOOD.sub(" whole blood ", text)
    text = _urinalysis_suffix(text)
    # "Thrombocyte/Platelet count": two spellings of one word are no ratio.
    text = _SLASH_PAIR.sub(_one_spelling, text)
    text = text.replace(" per ", " / ").replace("/", " ratio ")
    text = text.replace("%", " percent ").replace("#", " absolute ")
    text, specimens = _take_specimen(text)
    words: list[str] = []
    scale: str | None = None
    tokens = [t for t in _NON_WORD.split(text) if t]
    for token in tokens:
        if token in _SPECIMEN_WORDS:
            specimens.add(_SPECIMEN_WORDS[token])
        elif token in _METHOD_WORDS:
            methods.add(_METHOD_WORDS[token])
        elif token in _SCALE_WORDS:
            scale = _SCALE_WORDS[token] or scale
        elif token in PERCENT_WORDS:
            properties.add(FRACTION)
        elif token in ABSOLUTE_WORDS:
            properties.add(COUNT)
        elif token in _PROPERTY_ONLY_WORDS:
            properties.add(_PROPERTY_ONLY_WORDS[token])
        elif token in NOISE_WORDS:
            continue
        else:
            if token in _WORD_PROPERTIES:
                properties.add(_WORD_PROPERTIES[token])
            words.extend(canonical_words(token))
    words.extend(w for t in _NON_WORD.split(challenge) if t for w in canonical_words(t))
    if not words and BLOOD_ANY in specimens:  # "Blood" on a urinalysis report is the analyte
        words.append("blood")
        specimens.discard(BLOOD_ANY)
    if not words and "plasma" in tokens:  # "Plasma Cells" is a cell type
        words.append("plasma")
    if RATIO in words and FRACTION not in properties and len(words) > 1:
        properties.add(RATIO)
    prop = _pick_property(properties, scale)
    word_set = frozenset(w for w in words if w)
    return ParsedName(
        words=word_set,
        specimen=_pick_specimen(specimens),
        property=prop,
        method=_pick_method(methods),
        denominator=denominator,
        digits=frozenset(w for w in word_set if any(ch.isdigit() for ch in w)),
    )


# LOINC names a cell population by every marker it carries ("CD3+CD4+ (T4 helper) cells"); one
# named by fewer markers ("CD4 cells") is another LOINC component, whatever a site calls it.
_COEXPRESSION = re.compile(r"(?:\b[a-z0-9]+\+){2,}")


@lru_cache(maxsize=4096)
def coexpressed_markers(component: str) -> frozenset[str]:
    """The markers a co-expression population is named by ("CD3+CD4+ cells": cd3, cd4); empty
    for any other component ("HIV 1+2 Ab" joins two analytes, not markers of one cell)."""
    found = _COEXPRESSION.findall(ascii_lower(component))
    return frozenset(
        word for run in found for part in run.split("+") if part for word in canonical_words(part)
    )


def _pick_specimen(found: set[str]) -> str | None:
    for specimen in _SPECIMEN_PRIORITY:
        if specimen in found:
            return specimen
    return None


def _pick_property(found: set[str], scale: str | None) -> str | None:
    if len(found) == 1:
        return next(iter(found))
    if FRACTION in found:
        return FRACTION
    if found:
        return sorted(found)[0]
    return scale


def _pick_method(found: set[str]) -> str | None:
    for method in ("manual", "automated", *sorted(found)):
        if method in found:
            return method
    return None


# ---------------------------------------------------------------------------- comparable forms

# The forms compare whole phrases (the fuzzy and embedding corpus, a name's exact spelling, the
# key duplicates share), so they keep counting words ("cell count") the parse drops, and drop
# "automated", which the parse reads as a method.
_FORM_NOISE = FILLER_WORDS | {"automated"}
# Specimen words a form's core leaves out ("Serum Bilirubin (Total)" -> "bilirubin total").
_FORM_SPECIMENS: dict[str, str] = {
    "serum": "serum",
    "plasma": "serum",
    "sr": "serum",
    "blood": "blood",
    "whole": "whole_blood",
    "urine": "urine",
    "urinary": "urine",
    "spot": "urine",
    "venous": "blood",
    "capillary": "blood",
}
# Words that stay part of the name when nothing else remains ("Blood" on a urinalysis report).
_NAME_LIKE_SPECIMEN_WORDS = frozenset({"blood"})
_BRACKETED = re.compile(r"[\(\[\{]([^\)\]\}]*)[\)\]\}]")


@dataclass(frozen=True)
class NameForms:
    """The comparable forms of one test name."""

    full: str  # brackets dissolved, noise removed
    outside: str  # bracket contents dropped
    bracketed: tuple[str, ...]  # each bracket's content, normalized
    core: str  # full without specimen words
    specimen_hint: str | None  # "urine" | "serum" | "blood" | "whole_blood" | None

    @property
    def compact(self) -> str:
        """Core without spaces: "CK-MB", "CKMB" and "CK MB" meet here."""
        return self.core.replace(" ", "")


def _form_words(text: str) -> list[str]:
    text = text.replace("%", " percent ").replace("#", " absolute ").replace("&", " and ")
    return [word for word in _NON_WORD.split(text) if word and word not in _FORM_NOISE]


def normalize_text(raw: str) -> str:
    """Lowercase, US-spelled, punctuation-free, noise-free form of a name (brackets dissolved)."""
    return " ".join(_form_words(_clean(raw)))


def _specimen_hint(words: list[str]) -> str | None:
    hints = {_FORM_SPECIMENS[word] for word in words if word in _FORM_SPECIMENS}
    for hint in ("urine", "whole_blood", "serum", "blood"):
        if hint in hints:
            return hint
    return None


def _core_words(words: list[str]) -> list[str]:
    core = [word for word in words if word not in _FORM_SPECIMENS]
    if core:
        return core
    return [word for word in words if word in _NAME_LIKE_SPECIMEN_WORDS] or words


def analyze_name(raw: str) -> NameForms:
    """Split a raw test name into the forms the similarity tiers compare."""
    text = _clean(raw)
    bracketed = tuple(
        normalized
        for inner in _BRACKETED.findall(text)
        if (normalized := " ".join(_form_words(inner)))
    )
    words = _form_words(text)
    return NameForms(
        full=" ".join(words),
        outside=" ".join(_form_words(_BRACKETED.sub(" ", text))),
        bracketed=bracketed,
        core=" ".join(_core_words(words)),
        specimen_hint=_specimen_hint(words),
    )


# ------------------------------------------------------------------------------------ specimen


def specimen_fit(query: str | None, test: str) -> float | None:
    """How well the name's specimen fits the code's; None when it contradicts it (a veto).

    A bare name takes the conventional specimen: serum/plasma for chemistry, then whole blood
    (hematology codes only exist for blood); never a body fluid, where the name must say so.
    """
    if test == "plasma":
        test = SERUM
    if test == "any":
        return 0.05  # LOINC's unspecified specimen takes any name, below a stated match
    if query is None:
        if test == SERUM:
            return 0.3
        if test == BLOOD:
            return 0.25
        if test in WHOLE_BLOOD_KINDS:
            return 0.1
        if test in (URINE, "urine_24h"):
            return 0.0
        return None
    if query == test:
        return 1.0
    if "urine_24h" in (query, test):
        return None  # a 24-hour collection is its own test, never a spot urine
    if query == BLOOD_ANY:
        return 0.3 if test in BLOOD_FAMILY else None
    if query == SERUM:
        return 0.0 if test in WHOLE_BLOOD_KINDS else None
    if query == BLOOD:
        return 0.5 if test in WHOLE_BLOOD_KINDS else None
    if query in (ARTERIAL, VENOUS, CAPILLARY):
        return 0.5 if test == BLOOD else None
    if query == "body_fluid":
        return 0.5 if test in BODY_FLUIDS else None
    return None
