"""Regenerate ``tasks/labs/catalog.csv`` from the MIMIC-IV LOINC mapping (a dev-time tool).

Usage: ``python -m tasks.labs.build_catalog REFERENCE_CSV [OUT_CSV]``, where REFERENCE_CSV is
``d_labitems_to_loinc.csv`` of MIT-LCP/mimic-code (the shared reference data holds a copy).

The runtime never reads the reference: it only loads the shipped CSV, one row per LOINC code, which
a clinician can review and extend by hand. This script records how that CSV was derived:

1. Take every item of ``d_labitems_to_loinc.csv`` that has a LOINC code (every specimen), most
   frequent first (``labevents_row_count``). Items that share a LOINC code collapse into one test
   (the most frequent item gives the rank; every item's label becomes an alias).
2. Add the panel tests that uploaded consumer reports carry (``ADDITIONS``): their names come from
   the reference when it holds the code anywhere (any frequency), else from ``EXTRA_NAMES``.
3. Attach canonical UCUM units, accepted unit spellings with conversion factors, and the aliases
   that real reports use (``ALIASES``), all curated by hand below.
"""

from __future__ import annotations

import csv
import re
import sys
import textwrap
from pathlib import Path

DEFAULT_OUT = Path(__file__).with_name("catalog.csv")

NOTICE = (
    "This material contains content from LOINC (https://loinc.org). LOINC is copyright "
    "Regenstrief Institute, Inc. and the LOINC Committee and is available at no cost under the "
    "license at https://loinc.org/license. Test selection derived from the MIMIC-IV "
    "d_labitems_to_loinc mapping of MIT-LCP/mimic-code (MIT license)."
)

# Panel tests that consumer reports carry. Rank = order here, after the reference items, unless
# the reference already holds the code among its frequent items.
ADDITIONS: list[str] = [
    # diabetes
    "1558-6",
    "1521-4",
    "59261-8",
    "20448-7",
    # thyroid (free T3, thyroid antibodies, thyroglobulin)
    "3051-0",
    "8099-4",
    "8098-6",
    "3013-0",
    # vitamins
    "62292-8",
    # iron studies
    "2502-3",
    "2501-5",
    # inflammation
    "30522-7",
    "33959-8",
    # cardiac
    "10839-9",
    "89579-7",
    "67151-1",
    "30934-4",
    "32673-6",
    # hormones, PSA, homocysteine
    "2141-0",
    "2839-9",
    "10501-5",
    "2243-4",
    "2991-8",
    "2191-5",
    "10886-0",
    "12841-3",
    "13965-9",
    # urinalysis dipstick (presence forms) and urine albumin
    "20454-5",
    "25428-4",
    "2514-8",
    "5799-2",
    "5817-2",
    "9318-7",
    "11277-1",
    # kidney, electrolytes
    "3091-6",
    "3097-3",
    "2028-9",
    "98979-8",
    "62238-1",
    # lipids
    "13458-5",
    "11054-4",
    "43396-1",
    # liver
    "1759-0",
    "16325-3",
    # CBC indices
    "32623-1",
    "32207-3",
]

# Long common names for added codes that the reference does not hold.
EXTRA_NAMES: dict[str, tuple[str, str, str]] = {
    # code: (long common name, specimen, value kind)
    "1558-6": ("Fasting glucose [Mass/volume] in Serum or Plasma", "serum", "numeric"),
    "1521-4": ("Glucose [Mass/volume] in Serum or Plasma --2 hours post meal", "serum", "numeric"),
    "59261-8": ("Hemoglobin A1c/Hemoglobin.total in Blood by IFCC protocol", "blood", "numeric"),
    "3051-0": ("Triiodothyronine (T3) Free [Mass/volume] in Serum or Plasma", "serum", "numeric"),
    "62292-8": (
        "25-Hydroxyvitamin D2+25-Hydroxyvitamin D3 [Mass/volume] in Serum or Plasma",
        "serum",
        "numeric",
    ),
    "2501-5": (
        "Iron binding capacity.unsaturated [Mass/volume] in Serum or Plasma",
        "serum",
        "numeric",
    ),
    "89579-7": (
        "Troponin I.cardiac [Mass/volume] in Serum or Plasma by High sensitivity method",
        "serum",
        "numeric",
    ),
    "67151-1": (
        "Troponin T.cardiac [Mass/volume] in Serum or Plasma by High sensitivity method",
        "serum",
        "numeric",
    ),
    "30934-4": ("Natriuretic peptide B [Mass/volume] in Serum or Plasma", "serum", "numeric"),
    "32673-6": (
        "Creatine kinase.MB [Enzymatic activity/volume] in Serum or Plasma",
        "serum",
        "numeric",
    ),
    "10886-0": ("Prostate Specific Ag Free [Mass/volume] in Serum or Plasma", "serum", "numeric"),
    "12841-3": (
        "Prostate Specific Ag Free/Prostate specific Ag.total in Serum or Plasma",
        "serum",
        "numeric",
    ),
    "25428-4": ("Glucose [Presence] in Urine by Test strip", "urine", "ordinal"),
    "2514-8": ("Ketones [Presence] in Urine by Test strip", "urine", "ordinal"),
    "5799-2": ("Leukocyte esterase [Presence] in Urine by Test strip", "urine", "ordinal"),
    # Reports name squamous cells apart from the other epithelial cells; LOINC does too.
    "11277-1": (
        "Epithelial cells.squamous [#/area] in Urine sediment by Microscopy high power field",
        "urine",
        "numeric",
    ),
    "9318-7": ("Albumin/Creatinine [Mass Ratio] in Urine", "urine", "numeric"),
    "3091-6": ("Urea [Mass/volume] in Serum or Plasma", "serum", "numeric"),
    "3097-3": ("Urea nitrogen/Creatinine [Mass Ratio] in Serum or Plasma", "serum", "numeric"),
    "98979-8": (
        "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, Plasma or "
        "Blood by Creatinine-based formula (CKD-EPI 2021)",
        "serum",
        "numeric",
    ),
    "62238-1": (
        "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, Plasma or "
        "Blood by Creatinine-based formula (CKD-EPI)",
        "serum",
        "numeric",
    ),
    "13458-5": (
        "Cholesterol in VLDL [Mass/volume] in Serum or Plasma by calculation",
        "serum",
        "numeric",
    ),
    "11054-4": (
        "Cholesterol in LDL/Cholesterol in HDL [Mass Ratio] in Serum or Plasma",
        "serum",
        "numeric",
    ),
    "43396-1": ("Cholesterol non HDL [Mass/volume] in Serum or Plasma", "serum", "numeric"),
    "1759-0": ("Albumin/Globulin [Mass Ratio] in Serum or Plasma", "serum", "numeric"),
    "2141-0": ("Corticotropin [Mass/volume] in Plasma", "serum", "numeric"),
    "33959-8": ("Procalcitonin [Mass/volume] in Serum or Plasma", "serum", "numeric"),
    "16325-3": (
        "Aspartate aminotransferase/Alanine aminotransferase [Enzymatic activity ratio] in "
        "Serum or Plasma",
        "serum",
        "numeric",
    ),
}

# Canonical UCUM unit per code, where the reference's unit is missing, odd or not what reports use.
CANONICAL_OVERRIDES: dict[str, str] = {
    "6301-6": "{INR}",
    "77147-7": "mL/min/{1.73_m2}",
    "98979-8": "mL/min/{1.73_m2}",
    "62238-1": "mL/min/{1.73_m2}",
    "5803-2": "[pH]",
    "2756-5": "[pH]",
    "11558-4": "[pH]",
    "5811-5": "{ratio}",
    "14957-5": "mg/L",
    "2890-2": "{ratio}",
    "59261-8": "mmol/mol",
    "1558-6": "mg/dL",
    "1521-4": "mg/dL",
    "20448-7": "u[IU]/mL",
    "3051-0": "pg/mL",
    "2141-0": "pg/mL",
    "33959-8": "ng/mL",
    "62292-8": "ng/mL",
    "2502-3": "%",
    "2501-5": "ug/dL",
    "30522-7": "mg/L",
    "10839-9": "ng/mL",
    "89579-7": "ng/L",
    "67151-1": "ng/L",
    "30934-4": "pg/mL",
    "32673-6": "U/L",
    "2839-9": "ng/mL",
    "10886-0": "ng/mL",
    "12841-3": "%",
    "9318-7": "mg/g",
    "14958-3": "mg/g",
    "3091-6": "mg/dL",
    "3097-3": "{ratio}",
    "2028-9": "meq/L",
    "13458-5": "mg/dL",
    "11054-4": "{ratio}",
    "43396-1": "mg/dL",
    "1759-0": "{ratio}",
    "16325-3": "{ratio}",
    "32623-1": "fL",
    "32207-3": "fL",
    "3016-3": "m[IU]/L",
    "786-4": "g/dL",
    "5902-2": "s",
    "14979-9": "s",
    "3243-3": "s",
    "4537-7": "mm/h",
    "20405-7": "mg/dL",
    "5770-3": "",
    "5797-6": "mg/dL",
    "5792-7": "mg/dL",
    "5804-0": "mg/dL",
    # Units chosen here where the reference has none or one that contradicts the code's LOINC
    # property (tests/unit/labs/test_catalog_units.py checks every unit with a UCUM library).
    "60474-4": "10*3/uL",  # Reticulocytes [#/volume]: MIMIC's item is in %, the code a count
    "40665-2": "10*3/uL",  # the same, by manual count
    "96559-0": "pmol/L",  # Testosterone Free [Moles/volume]: MIMIC reports it in pg/mL
    "5631-7": "ug/dL",  # Copper [Mass/volume] in Serum or Plasma
    "5632-5": "ug/L",  # Copper [Mass/volume] in Urine
    "5763-8": "ug/dL",  # Zinc [Mass/volume] in Serum or Plasma
    "15069-8": "umol/L",  # Fructosamine [Moles/volume]
    "32546-4": "U/g{Hb}",  # G6PD [Enzymatic activity/mass] in Red Blood Cells
    "1825-9": "mg/dL",  # Alpha 1 antitrypsin [Mass/volume]
    "1695-6": "mg/(24.h)",
    "11277-1": "/[HPF]",  # 5-HIAA [Mass/time] in 24 hour Urine: MIMIC's item has no unit
}

# Codes whose results are stored under another code: one analyte, one series (docs/formats.md).
# HbA1c by IFCC protocol (mmol/mol) is converted to the NGSP fraction (%), the unit most of the
# reports here print, so that a user's HbA1c trend never splits when a lab changes its unit.
SERIES: dict[str, str] = {"59261-8": "4548-4"}

# Reference spellings -> UCUM.
REFERENCE_UNITS: dict[str, str] = {
    "mg/dL": "mg/dL",
    "%": "%",
    "mEq/L": "meq/L",
    "ng/mL": "ng/mL",
    "K/uL": "10*3/uL",
    "IU/L": "U/L",
    "/hpf": "/[HPF]",
    "#/hpf": "/[HPF]",
    "g/dL": "g/dL",
    "ug/dL": "ug/dL",
    "#/uL": "/uL",
    "Ratio": "{ratio}",
    "mg/L": "mg/L",
    "ug/mL": "ug/mL",
    "mm Hg": "mm[Hg]",
    "mmol/L": "mmol/L",
    "pg/mL": "pg/mL",
    "ng/dL": "ng/dL",
    "fL": "fL",
    "sec": "s",
    "#/lpf": "/[LPF]",
    "mOsm/kg": "mosm/kg",
    "mIU/mL": "m[IU]/mL",
    "U/mL": "U/mL",
    "m/uL": "10*6/uL",
    "pg": "pg",
    "mm/hr": "mm/h",
    "mg/g": "mg/g",
    "IU/mL": "[IU]/mL",
    "mL": "mL",
    "L/min": "L/min",
    "mg/24hr": "mg/(24.h)",
    "umol/L": "umol/L",
    "nmol/L": "nmol/L",
    "units": "",
    "N/A": "",
    "#ERROR!": "",
    "": "",
}

# Conversions that hold for every test of a canonical unit: {unit: factor to canonical}.
FAMILY_UNITS: dict[str, dict[str, float]] = {
    "mg/dL": {"mg/dL": 1.0, "g/L": 100.0, "mg/L": 0.1},
    "g/dL": {"g/dL": 1.0, "g/L": 0.1},
    "mg/L": {"mg/L": 1.0, "mg/dL": 10.0, "ug/mL": 1.0},
    "ug/mL": {"ug/mL": 1.0, "mg/L": 1.0},
    "ng/mL": {"ng/mL": 1.0, "ug/L": 1.0, "ng/L": 0.001},
    "ng/L": {"ng/L": 1.0, "pg/mL": 1.0, "ng/mL": 1000.0},
    "pg/mL": {"pg/mL": 1.0, "ng/L": 1.0},
    "ug/dL": {"ug/dL": 1.0, "ug/L": 0.1},
    "ug/L": {"ug/L": 1.0, "ng/mL": 1.0, "ug/dL": 10.0},
    "pmol/L": {"pmol/L": 1.0, "nmol/L": 1000.0},
    "U/g{Hb}": {"U/g{Hb}": 1.0},
    "ng/dL": {"ng/dL": 1.0, "ng/mL": 100.0, "pg/mL": 0.1},
    "meq/L": {"meq/L": 1.0, "mmol/L": 1.0},
    "mmol/L": {"mmol/L": 1.0},
    "umol/L": {"umol/L": 1.0},
    "nmol/L": {"nmol/L": 1.0},
    "U/L": {"U/L": 1.0},
    "U/mL": {"U/mL": 1.0},
    "[IU]/mL": {"[IU]/mL": 1.0},
    "m[IU]/mL": {"m[IU]/mL": 1.0, "U/L": 1.0},
    "m[IU]/L": {"m[IU]/L": 1.0, "u[IU]/mL": 1.0},
    "u[IU]/mL": {"u[IU]/mL": 1.0, "m[IU]/L": 1.0},
    "10*3/uL": {"10*3/uL": 1.0, "/uL": 0.001},
    "10*6/uL": {"10*6/uL": 1.0},
    "/uL": {"/uL": 1.0, "10*3/uL": 1000.0},
    "%": {"%": 1.0},
    "fL": {"fL": 1.0},
    "pg": {"pg": 1.0},
    "s": {"s": 1.0},
    "mm/h": {"mm/h": 1.0},
    "/[HPF]": {"/[HPF]": 1.0},
    "/[LPF]": {"/[LPF]": 1.0},
    "mg/g": {"mg/g": 1.0},
    "mmol/mol": {"mmol/mol": 1.0},
    "mL/min/{1.73_m2}": {"mL/min/{1.73_m2}": 1.0},
    "mosm/kg": {"mosm/kg": 1.0},
    "mm[Hg]": {"mm[Hg]": 1.0, "kPa": 7.50062},  # blood gases: SI reports print kPa
    "{ratio}": {"{ratio}": 1.0, "": 1.0},
    "[pH]": {"[pH]": 1.0, "": 1.0},
    "{INR}": {"{INR}": 1.0, "": 1.0},
    "": {"": 1.0},
}

_GLUCOSE = {"mmol/L": 18.016}  # molar mass 180.16 g/mol
_CHOLESTEROL = {"mmol/L": 38.67}
_BILIRUBIN = {"umol/L": 0.05848}  # 1 mg/dL = 17.1 umol/L
_IRON = {"umol/L": 5.585}
_CREATININE = {"umol/L": 0.01131, "mmol/L": 11.31}  # 1 mg/dL = 88.4 umol/L
# Analyte-specific conversions: {unit: (factor, offset)} to the test's canonical unit.
ANALYTE_UNITS: dict[str, dict[str, tuple[float, float]]] = {
    **{
        c: {u: (f, 0.0) for u, f in _GLUCOSE.items()}
        for c in ("2345-7", "2339-0", "1558-6", "1521-4", "27353-2", "5792-7")
    },
    **{
        c: {u: (f, 0.0) for u, f in _CHOLESTEROL.items()}
        for c in ("2093-3", "2085-9", "13457-7", "18262-6", "13458-5", "43396-1")
    },
    **{c: {u: (f, 0.0) for u, f in _BILIRUBIN.items()} for c in ("1975-2", "1968-7", "1971-1")},
    **{c: {u: (f, 0.0) for u, f in _IRON.items()} for c in ("2498-4", "2500-7", "2501-5")},
    **{c: {u: (f, 0.0) for u, f in _CREATININE.items()} for c in ("2160-0", "38483-4", "2161-8")},
    "2571-8": {"mmol/L": (88.57, 0.0)},
    "3094-0": {"mmol/L": (2.801, 0.0)},  # urea mmol/L carries the same N moles as BUN
    "3091-6": {"mmol/L": (6.006, 0.0)},
    "3084-1": {"umol/L": (0.016812, 0.0), "mmol/L": (16.812, 0.0)},
    # HbA1c, the IFCC-NGSP master equation: % = 0.09148 * mmol/mol + 2.152
    "4548-4": {"mmol/mol": (0.09148, 2.152)},
    "59261-8": {"%": (10.9314, -23.5243)},  # its inverse
    "60474-4": {"10*6/uL": (1000.0, 0.0)},
    "40665-2": {"10*6/uL": (1000.0, 0.0)},
    "96559-0": {"pg/mL": (3.467, 0.0), "ng/dL": (34.67, 0.0)},  # 288.42 g/mol
    "5631-7": {"umol/L": (6.355, 0.0)},  # copper 63.55 g/mol
    "5763-8": {"umol/L": (6.538, 0.0)},  # zinc 65.38 g/mol
    "17861-6": {"mmol/L": (4.008, 0.0), "meq/L": (2.004, 0.0)},
    "1994-3": {"mg/dL": (0.2495, 0.0), "meq/L": (0.5, 0.0)},
    "19123-9": {"mmol/L": (2.431, 0.0), "meq/L": (1.2155, 0.0)},
    "2777-1": {"mmol/L": (3.097, 0.0)},
    "2132-9": {"pmol/L": (1.355, 0.0)},
    "2284-8": {"nmol/L": (0.4413, 0.0)},
    "1989-3": {"nmol/L": (0.4006, 0.0)},
    "62292-8": {"nmol/L": (0.4006, 0.0)},
    "3024-7": {"pmol/L": (0.07769, 0.0)},
    "3053-6": {"nmol/L": (65.1, 0.0)},
    "3026-2": {"nmol/L": (0.0777, 0.0)},
    "2143-6": {"nmol/L": (0.03625, 0.0)},
    "2986-8": {"nmol/L": (28.84, 0.0)},
    "2991-8": {"pmol/L": (0.2884, 0.0)},
    "2842-3": {"m[IU]/L": (0.0472, 0.0), "u[IU]/mL": (0.0472, 0.0)},  # WHO 3rd IS: 21.2 mIU/L
    "2243-4": {"pmol/L": (0.2724, 0.0)},
    "1834-1": {"[IU]/mL": (1.21, 0.0)},  # WHO 72/225: 1 IU = 1.21 ng
    "2839-9": {"nmol/L": (0.3145, 0.0)},
    "33762-6": {"pmol/L": (8.457, 0.0)},
    "20448-7": {"pmol/L": (0.144, 0.0)},
    "718-7": {"mmol/L": (1.611, 0.0)},
    "4544-3": {"L/L": (100.0, 0.0)},
    "777-3": {"10*5/uL": (100.0, 0.0)},  # Indian reports: platelets in lakh/cumm
    "6690-2": {"10*5/uL": (100.0, 0.0)},
    "9318-7": {"mg/mmol": (8.84, 0.0)},
    "14958-3": {"mg/mmol": (8.84, 0.0)},
    "2890-2": {"mg/mg": (1.0, 0.0), "mg/g": (0.001, 0.0)},
    "32693-4": {"mg/dL": (0.111, 0.0)},
    "20405-7": {"{EU}/dL": (1.0, 0.0)},  # 1 Ehrlich unit ~ 1 mg urobilinogen
    "98979-8": {"mL/min": (1.0, 0.0)},
    "62238-1": {"mL/min": (1.0, 0.0)},
    "77147-7": {"mL/min": (1.0, 0.0)},
    "786-4": {"%": (1.0, 0.0), "mmol/L": (1.611, 0.0)},  # MCHC as hemoglobin (Fe) moles
    "2075-0": {"mg/dL": (0.2821, 0.0)},  # chloride 35.45 g/mol
    "3051-0": {"pmol/L": (0.651, 0.0), "ng/dL": (10.0, 0.0), "pg/dL": (0.01, 0.0)},
    "3034-6": {"umol/L": (7.957, 0.0)},  # transferrin 79.57 kDa
    "1825-9": {"umol/L": (5.2, 0.0)},  # alpha-1-antitrypsin 52 kDa
    "1751-7": {"umol/L": (0.00665, 0.0)},  # albumin 66.5 kDa
    "2141-0": {"pmol/L": (4.541, 0.0)},  # ACTH(1-39) 4541 g/mol
    "13965-9": {"ug/dL": (0.07398, 0.0), "mg/L": (7.398, 0.0)},  # homocysteine 135.18
    "2276-4": {"pmol/L": (0.445, 0.0)},  # ferritin: 1 ug/L = 2.247 pmol/L
    # Drug levels reported in moles (SI reports): factor = molar mass (g/mol) / 1000 into the
    # catalog's ug/mL (ng/mL for digoxin and the immunosuppressants, mg/dL for salicylate).
    "10535-3": {"nmol/L": (0.7809, 0.0)},  # digoxin 780.94
    "3968-5": {"umol/L": (0.2523, 0.0)},  # phenytoin 252.27
    "3969-3": {"umol/L": (0.2523, 0.0)},
    "3432-2": {"umol/L": (0.2363, 0.0)},  # carbamazepine 236.27
    "4086-5": {"umol/L": (0.1442, 0.0)},  # valproic acid 144.21
    "3948-7": {"umol/L": (0.2322, 0.0)},  # phenobarbital 232.24
    "4049-3": {"umol/L": (0.1802, 0.0)},  # theophylline 180.16
    "20578-1": {"umol/L": (1.449, 0.0)},  # vancomycin 1449.3
    "35670-9": {"umol/L": (0.4675, 0.0)},  # tobramycin 467.5
    "35669-1": {"umol/L": (0.5856, 0.0)},  # amikacin 585.6
    "3298-7": {"umol/L": (0.1512, 0.0)},  # acetaminophen 151.16
    "4024-6": {"mmol/L": (13.81, 0.0)},  # salicylic acid 138.12, into mg/dL
    "3520-4": {"nmol/L": (1.2026, 0.0)},  # cyclosporine 1202.6
    "11253-2": {"nmol/L": (0.804, 0.0)},  # tacrolimus 804.0
}

# Aliases the way uploaded reports name tests. Prefixes ("S.", "Serum"), bracket qualifiers and
# method words are handled by the normalizer, so they need not be repeated here.
ALIASES: dict[str, list[str]] = {
    # --- CBC
    "718-7": ["Hemoglobin", "Haemoglobin", "Hb", "Hgb", "HB", "Hemoglobin Hb"],
    "4544-3": ["Hematocrit", "PCV", "Packed Cell Volume", "HCT", "Haematocrit"],
    "789-8": [
        "RBC Count",
        "Red Blood Cell Count",
        "Total RBC Count",
        "Erythrocyte Count",
        "RBC",
        "Red Cell Count",
    ],
    "6690-2": [
        "WBC Count",
        "Total Leukocyte Count",
        "TLC",
        "Total WBC Count",
        "White Blood Cells",
        "WBC",
        "Leukocyte Count",
        "Total Count",
        "White Cell Count",
        "Leukocytes",
    ],
    "777-3": ["Platelet Count", "Platelets", "PLT", "Thrombocyte Count", "Platelet"],
    "787-2": ["MCV", "Mean Corpuscular Volume", "Mean Cell Volume"],
    "785-6": ["MCH", "Mean Corpuscular Hemoglobin", "Mean Cell Hemoglobin"],
    "786-4": [
        "MCHC",
        "Mean Corpuscular Hemoglobin Concentration",
        "Mean Cell Hemoglobin Concentration",
    ],
    "788-0": [
        "RDW",
        "RDW-CV",
        "Red Cell Distribution Width",
        "RDW CV",
        "Red Cell Distribution Width CV",
    ],
    "21000-5": ["RDW-SD", "RDW SD", "Red Cell Distribution Width SD", "RDW"],
    "32623-1": ["MPV", "Mean Platelet Volume"],
    "32207-3": ["PDW", "Platelet Distribution Width"],
    "770-8": [
        "Neutrophils",
        "Neutrophil",
        "Neutrophils %",
        "Polymorphs",
        "Segmented Neutrophils",
        "Neutrophil Percentage",
        "Polymorphs %",
        "Neut%",
        "Segs",
        "Neutrophils Percent",
    ],
    "736-9": [
        "Lymphocytes",
        "Lymphocyte",
        "Lymphocytes %",
        "Lymph%",
        "Lymphocyte Percentage",
        "Lymphocytes Percent",
    ],
    "5905-5": ["Monocytes", "Monocyte", "Monocytes %", "Mono%", "Monocyte Percentage"],
    "713-8": ["Eosinophils", "Eosinophil", "Eosinophils %", "Eos%", "Eosinophil Percentage"],
    "706-2": ["Basophils", "Basophil", "Basophils %", "Baso%", "Basophil Percentage"],
    "751-8": [
        "Absolute Neutrophil Count",
        "ANC",
        "Neutrophils Absolute",
        "Abs Neutrophils",
        "Absolute Neutrophils",
        "Neutrophil Count",
    ],
    "731-0": [
        "Absolute Lymphocyte Count",
        "ALC",
        "Lymphocytes Absolute",
        "Abs Lymphocytes",
        "Absolute Lymphocytes",
        "Lymphocyte Count",
    ],
    "742-7": [
        "Absolute Monocyte Count",
        "AMC",
        "Monocytes Absolute",
        "Abs Monocytes",
        "Absolute Monocytes",
        "Monocyte Count",
    ],
    "711-2": [
        "Absolute Eosinophil Count",
        "AEC",
        "Eosinophils Absolute",
        "Abs Eosinophils",
        "Absolute Eosinophils",
        "Eosinophil Count",
    ],
    "704-7": [
        "Absolute Basophil Count",
        "ABC",
        "Basophils Absolute",
        "Abs Basophils",
        "Absolute Basophils",
        "Basophil Count",
    ],
    "4537-7": [
        "ESR",
        "Erythrocyte Sedimentation Rate",
        "Sed Rate",
        "Sedimentation Rate",
        "ESR Westergren",
    ],
    "60474-4": ["Reticulocyte Count", "Retic Count", "Reticulocytes"],
    "38518-7": ["Immature Granulocytes", "IG%", "Immature Granulocyte"],
    "58413-6": ["Nucleated RBC", "NRBC"],
    # --- lipids
    "2093-3": ["Total Cholesterol", "Cholesterol Total", "Cholesterol", "T. Cholesterol", "Chol"],
    "2085-9": [
        "HDL Cholesterol",
        "HDL",
        "HDL-C",
        "High Density Lipoprotein",
        "Cholesterol HDL",
        "HDL Direct",
        "Good Cholesterol",
    ],
    "13457-7": [
        "LDL Cholesterol",
        "LDL",
        "LDL-C",
        "Low Density Lipoprotein",
        "Cholesterol LDL",
        "LDL Cholesterol Calculated",
        "LDL Calculated",
        "Calculated LDL",
    ],
    "18262-6": [
        "LDL Cholesterol Direct",
        "Direct LDL",
        "LDL Direct",
        "Direct LDL Cholesterol",
        "LDL Measured",
    ],
    "13458-5": [
        "VLDL Cholesterol",
        "VLDL",
        "Very Low Density Lipoprotein",
        "VLDL-C",
        "Cholesterol VLDL",
    ],
    "2571-8": ["Triglycerides", "Triglyceride", "TG", "TGL", "Trigs"],
    "9830-1": [
        "Total Cholesterol/HDL Ratio",
        "Cholesterol/HDL Ratio",
        "TC/HDL Ratio",
        "Chol/HDL Ratio",
        "Total Cholesterol HDL Ratio",
        "Cholesterol HDL Ratio",
        "CHOL/HDL",
    ],
    "11054-4": ["LDL/HDL Ratio", "LDL HDL Ratio", "LDL-C/HDL-C Ratio"],
    "43396-1": ["Non-HDL Cholesterol", "Non HDL Cholesterol", "Non-HDL", "Non HDL-C"],
    # --- liver
    "1742-6": [
        "ALT",
        "SGPT",
        "Alanine Aminotransferase",
        "Alanine Transaminase",
        "ALT SGPT",
        "SGPT ALT",
        "Glutamic Pyruvic Transaminase",
    ],
    "1920-8": [
        "AST",
        "SGOT",
        "Aspartate Aminotransferase",
        "Aspartate Transaminase",
        "AST SGOT",
        "SGOT AST",
        "Glutamic Oxaloacetic Transaminase",
    ],
    "6768-6": ["ALP", "Alkaline Phosphatase", "Alk Phos", "Alk Phosphatase", "ALKP"],
    "2324-2": [
        "GGT",
        "Gamma GT",
        "GGTP",
        "Gamma Glutamyl Transferase",
        "Gamma Glutamyl Transpeptidase",
        "Gamma-Glutamyltransferase",
    ],
    "1975-2": [
        "Total Bilirubin",
        "Bilirubin Total",
        "T. Bilirubin",
        "TBIL",
        "Bilirubin T",
        "Bilirubin",
    ],
    "1968-7": [
        "Direct Bilirubin",
        "Bilirubin Direct",
        "Conjugated Bilirubin",
        "D. Bilirubin",
        "DBIL",
        "Bilirubin Conjugated",
        "Bilirubin D",
    ],
    "1971-1": [
        "Indirect Bilirubin",
        "Bilirubin Indirect",
        "Unconjugated Bilirubin",
        "I. Bilirubin",
        "IBIL",
        "Bilirubin Unconjugated",
    ],
    "2885-2": ["Total Protein", "Protein Total", "Total Proteins", "TP", "Proteins Total"],
    "1751-7": ["Albumin", "ALB", "Albumin Serum"],
    "2336-6": ["Globulin", "Globulins", "GLOB"],
    "1759-0": [
        "A/G Ratio",
        "Albumin/Globulin Ratio",
        "AG Ratio",
        "A:G Ratio",
        "Albumin Globulin Ratio",
    ],
    "16325-3": ["SGOT/SGPT Ratio", "AST/ALT Ratio", "De Ritis Ratio", "AST ALT Ratio"],
    # --- kidney
    "2160-0": ["Creatinine", "Creat", "Cr", "CREA"],
    "3094-0": ["BUN", "Blood Urea Nitrogen", "Urea Nitrogen", "Urea N"],
    "3091-6": ["Urea", "Blood Urea", "Urea Serum"],
    "3084-1": ["Uric Acid", "Urate", "UA"],
    "98979-8": [
        "eGFR",
        "Estimated GFR",
        "Estimated Glomerular Filtration Rate",
        "GFR Estimated",
        "eGFR CKD-EPI 2021",
        "GFR",
    ],
    "62238-1": ["eGFR CKD-EPI", "GFR CKD-EPI", "CKD-EPI eGFR"],
    "77147-7": ["eGFR MDRD", "GFR MDRD", "MDRD eGFR", "Estimated GFR MDRD"],
    "3097-3": [
        "BUN/Creatinine Ratio",
        "BUN Creatinine Ratio",
        "Urea Nitrogen/Creatinine Ratio",
        "BUN/Creat Ratio",
    ],
    # --- electrolytes and minerals
    "2951-2": ["Sodium", "Na", "Na+"],
    "2823-3": ["Potassium", "K", "K+"],
    "2075-0": ["Chloride", "Cl", "Cl-"],
    "1963-8": ["Bicarbonate", "HCO3", "Bicarb", "HCO3-"],
    "2028-9": ["Total CO2", "CO2", "Carbon Dioxide", "TCO2", "CO2 Total"],
    # A bare "Anion gap" states no formula: the code that states none (4 adds potassium).
    "33037-3": ["Anion Gap", "AG"],
    "17861-6": ["Calcium", "Ca", "Total Calcium", "Calcium Total"],
    "1994-3": ["Ionized Calcium", "Ionised Calcium", "iCa", "Free Calcium", "Calcium Ionized"],
    "19123-9": ["Magnesium", "Mg"],
    "2777-1": ["Phosphorus", "Phosphate", "Inorganic Phosphorus", "PO4", "Phos"],
    # --- diabetes
    "1558-6": [
        "Fasting Blood Sugar",
        "FBS",
        "Fasting Glucose",
        "Glucose Fasting",
        "Fasting Plasma Glucose",
        "FPG",
        "Blood Sugar Fasting",
        "Fasting Sugar",
        "Glucose F",
        "Sugar Fasting",
        "Glucose Fasting FBS",
    ],
    "1521-4": [
        "Post Prandial Blood Sugar",
        "PPBS",
        "Postprandial Glucose",
        "Glucose PP",
        "Post Meal Glucose",
        "2 Hour Postprandial Glucose",
        "Glucose Post Prandial",
        "Blood Sugar PP",
        "PP Sugar",
        "PPBG",
        "Post Lunch Blood Sugar",
        "PLBS",
        "Sugar Post Prandial",
        "Glucose 2 Hr PP",
        "Post Prandial Glucose",
        "Glucose 2 Hour Post Prandial",
    ],
    "2345-7": [
        "Glucose",
        "Random Blood Sugar",
        "RBS",
        "Glucose Random",
        "Random Glucose",
        "Blood Sugar",
        "Blood Glucose",
        "Plasma Glucose",
        "Blood Sugar Random",
        "Sugar Random",
        "Random Plasma Glucose",
        "RPG",
    ],
    "2339-0": ["Whole Blood Glucose", "Capillary Blood Glucose", "CBG", "Glucometer Glucose"],
    "4548-4": [
        "HbA1c",
        "Hemoglobin A1c",
        "Glycated Hemoglobin",
        "Glycosylated Hemoglobin",
        "A1c",
        "Hb A1c",
        "Glyco Hb",
        "GHb",
        "HbA1c NGSP",
    ],
    # The generic HbA1c names sit on both A1c tests on purpose: the unit (% or mmol/mol) decides.
    "59261-8": [
        "HbA1c IFCC",
        "Hemoglobin A1c IFCC",
        "IFCC HbA1c",
        "HbA1c",
        "Hemoglobin A1c",
        "Glycated Hemoglobin",
        "A1c",
        "Hb A1c",
    ],
    "27353-2": [
        "Estimated Average Glucose",
        "eAG",
        "Mean Blood Glucose",
        "Average Blood Glucose",
        "Mean Plasma Glucose",
        "Estimated Average Glucose eAG",
        "ABG",
    ],
    "20448-7": ["Insulin", "Fasting Insulin", "Insulin Fasting", "Serum Insulin"],
    # --- thyroid
    "3016-3": [
        "TSH",
        "Thyroid Stimulating Hormone",
        "Thyrotropin",
        "TSH Ultrasensitive",
        "Ultrasensitive TSH",
        "US TSH",
        "TSH 3rd Generation",
        "Third Generation TSH",
    ],
    "3053-6": ["T3", "Total T3", "T3 Total", "Triiodothyronine", "Total Triiodothyronine", "TT3"],
    "3026-2": ["T4", "Total T4", "T4 Total", "Thyroxine", "Total Thyroxine", "TT4"],
    "3051-0": ["Free T3", "FT3", "Free Triiodothyronine", "T3 Free"],
    "3050-2": ["T3 Uptake", "T3 Resin Uptake", "T3RU"],
    "3024-7": ["Free T4", "FT4", "Free Thyroxine", "T4 Free"],
    # --- vitamins
    "62292-8": [
        "Vitamin D",
        "25-OH Vitamin D",
        "25 Hydroxy Vitamin D",
        "Vitamin D Total",
        "25-Hydroxyvitamin D",
        "Vit D",
        "Vitamin D 25-OH",
        "25 OH Vit D",
        "Total 25 Hydroxy Vitamin D",
        "Vitamin D 25 Hydroxy",
        "25(OH)D",
    ],
    "1989-3": ["Vitamin D3", "25-Hydroxy Vitamin D3", "Cholecalciferol", "Vit D3"],
    "2132-9": ["Vitamin B12", "B12", "Cobalamin", "Vit B12", "Cyanocobalamin", "Vitamin B-12"],
    "2284-8": ["Folate", "Folic Acid", "Vitamin B9", "Serum Folate"],
    # --- iron studies
    "2498-4": ["Iron", "Serum Iron", "Fe", "Iron Serum"],
    "2500-7": ["TIBC", "Total Iron Binding Capacity", "Iron Binding Capacity"],
    "2501-5": ["UIBC", "Unsaturated Iron Binding Capacity"],
    "2502-3": [
        "Transferrin Saturation",
        "TSAT",
        "Iron Saturation",
        "% Saturation",
        "Percent Saturation",
        "Transferrin Saturation %",
    ],
    "2276-4": ["Ferritin", "Serum Ferritin"],
    "3034-6": ["Transferrin"],
    # --- inflammation
    "1988-5": ["CRP", "C-Reactive Protein", "C Reactive Protein", "CRP Quantitative"],
    "30522-7": [
        "hs-CRP",
        "hsCRP",
        "High Sensitivity CRP",
        "High Sensitivity C-Reactive Protein",
        "CRP High Sensitivity",
        "Cardio CRP",
        "Ultra Sensitive CRP",
        "hsCRP Cardiac",
    ],
    # --- cardiac
    "6598-7": ["Troponin T", "Trop T", "TnT", "cTnT"],
    "10839-9": ["Troponin I", "Trop I", "TnI", "cTnI"],
    "89579-7": ["Troponin I", "hs Troponin I", "High Sensitivity Troponin I", "hs-TnI", "hsTnI"],
    "67151-1": ["Troponin T", "hs Troponin T", "High Sensitivity Troponin T", "hs-TnT", "hsTnT"],
    "33762-6": [
        "NT-proBNP",
        "NT pro BNP",
        "N-Terminal pro BNP",
        "Pro BNP",
        "N-Terminal Pro B-Type Natriuretic Peptide",
        "NTproBNP",
    ],
    "30934-4": ["BNP", "B-Type Natriuretic Peptide", "Brain Natriuretic Peptide"],
    "2157-6": [
        "CK",
        "CPK",
        "Creatine Kinase",
        "Creatine Phosphokinase",
        "CK Total",
        "Total CK",
        "CPK Total",
    ],
    "13969-1": ["CK-MB Mass", "CKMB Mass", "CK-MB"],
    "32673-6": ["CK-MB", "CK-MB Activity", "CPK-MB", "CKMB Activity"],
    # --- pancreas, LDH
    "1798-8": ["Amylase", "Serum Amylase", "Amylase Total"],
    "3040-3": ["Lipase", "Serum Lipase"],
    "2532-0": ["LDH", "Lactate Dehydrogenase", "LD", "Lactic Dehydrogenase", "LDH Total"],
    # --- coagulation
    "5902-2": ["PT", "Prothrombin Time", "Pro Time", "PT Patient", "Prothrombin Time Patient"],
    "6301-6": ["INR", "International Normalized Ratio", "PT INR", "INR PT"],
    "14979-9": [
        "aPTT",
        "APTT",
        "PTT",
        "Activated Partial Thromboplastin Time",
        "Partial Thromboplastin Time",
        "APTT Patient",
    ],
    "3255-7": ["Fibrinogen"],
    "48065-7": ["D-Dimer", "D Dimer", "D-Dimer FEU"],
    "48066-5": ["D-Dimer", "D-Dimer DDU"],
    "20565-8": ["CO2", "Total CO2", "tCO2"],
    # --- hormones
    "2143-6": ["Cortisol", "Serum Cortisol", "Cortisol AM", "Morning Cortisol", "Cortisol Random"],
    "2986-8": ["Testosterone", "Total Testosterone", "Testosterone Total"],
    "2991-8": ["Free Testosterone", "Testosterone Free"],
    "2842-3": ["Prolactin", "PRL"],
    "15067-2": ["FSH", "Follicle Stimulating Hormone"],
    "10501-5": ["LH", "Luteinizing Hormone", "Luteinising Hormone"],
    "2243-4": ["Estradiol", "E2", "Oestradiol"],
    "2839-9": ["Progesterone"],
    "8099-4": [
        "Anti TPO",
        "Anti-TPO Antibody",
        "Thyroid Peroxidase Antibody",
        "TPO Antibody",
        "Anti Thyroid Peroxidase",
        "Anti-Microsomal Antibody",
    ],
    "8098-6": ["Anti-Thyroglobulin Antibody", "Anti TG", "Thyroglobulin Antibody", "ATG"],
    "2731-8": ["PTH", "Parathyroid Hormone", "Intact PTH", "iPTH"],
    "19080-1": ["Beta hCG", "Beta HCG", "Total Beta hCG", "Serum Beta hCG", "hCG"],
    "2191-5": ["DHEA-S", "DHEAS", "DHEA Sulfate", "Dehydroepiandrosterone Sulfate"],
    # --- PSA, misc
    "2857-1": [
        "PSA",
        "Total PSA",
        "Prostate Specific Antigen",
        "PSA Total",
        "Prostate Specific Antigen Total",
    ],
    "10886-0": ["Free PSA", "PSA Free"],
    "12841-3": ["% Free PSA", "Free PSA Ratio", "Percent Free PSA", "Free/Total PSA Ratio"],
    "13965-9": ["Homocysteine", "Hcy", "Total Homocysteine"],
    # The reference puts "Adrenocorticotrophic Hormone" on Corticotropin IgE Ab (an allergy
    # test); these aliases claim the hormone's names for the hormone.
    "2141-0": [
        "ACTH",
        "Adrenocorticotropic Hormone",
        "Adrenocorticotrophic Hormone",
        "Corticotropin",
    ],
    # Not "PCT": CBC reports print plateletcrit so.
    "33959-8": ["Procalcitonin"],
    "32693-4": ["Lactate", "Lactic Acid"],
    "2039-6": ["CEA", "Carcinoembryonic Antigen", "Carcino Embryonic Antigen"],
    "1834-1": ["AFP", "Alpha Fetoprotein", "Alpha-Fetoprotein", "Alpha Feto Protein"],
    "13967-5": ["SHBG", "Sex Hormone Binding Globulin"],
    "8061-4": ["ANA", "Antinuclear Antibody", "Anti-Nuclear Antibody"],
    "26508-2": ["Bands", "Band Forms", "Band Neutrophils", "Band Cells"],
    "31017-7": ["tTG IgA", "Tissue Transglutaminase IgA", "Anti-tTG IgA"],
    "10334-1": ["CA-125", "CA 125", "Cancer Antigen 125"],
    "11572-5": ["RA Factor", "Rheumatoid Factor", "RF"],
    "5196-1": ["HBsAg", "Hepatitis B Surface Antigen", "Australia Antigen"],
    "13955-0": ["Anti HCV", "HCV Antibody", "Hepatitis C Antibody"],
    "5220-9": ["HIV 1 Antibody", "HIV Antibody", "Anti HIV"],
    # --- urinalysis: physical and dipstick
    "5778-6": ["Urine Color", "Colour", "Color"],
    "5767-9": ["Urine Appearance", "Appearance", "Clarity", "Transparency", "Turbidity"],
    "5803-2": ["Urine pH", "Reaction", "Urine Reaction", "pH Urine"],
    "5811-5": ["Specific Gravity", "Urine Specific Gravity", "Sp. Gravity", "SG", "Sp Gr"],
    "20454-5": [
        "Urine Protein",
        "Urine Albumin Qualitative",
        "Protein Urine",
        "Albumin Urine",
        "Urine Albumin",
        "Proteins Urine",
    ],
    "5804-0": ["Urine Protein Quantitative", "Protein Urine Strip"],
    "25428-4": ["Urine Glucose", "Urine Sugar", "Glucose Urine", "Sugar Urine"],
    "5792-7": ["Urine Glucose Quantitative", "Glucose Urine Strip"],
    "2514-8": ["Ketone Bodies", "Urine Ketones", "Ketones", "Acetone", "Ketone"],
    "5797-6": ["Urine Ketones Quantitative"],
    "5770-3": ["Urine Bilirubin", "Bile Pigments", "Bilirubin Urine", "Bile Pigment"],
    "20405-7": ["Urobilinogen", "Urine Urobilinogen"],
    "5802-4": ["Nitrite", "Nitrites", "Urine Nitrite"],
    "53963-5": [
        "Urine Blood",
        "Blood Urine",
        "Occult Blood Urine",
        "Blood in Urine",
        "Hemoglobin Urine",
    ],
    "5799-2": ["Leukocyte Esterase", "Leucocyte Esterase", "WBC Esterase", "LE"],
    # --- urinalysis: microscopy
    "13945-1": [
        "Urine RBC",
        "RBCs Urine",
        "Red Blood Cells Urine",
        "RBC Urine",
        "Urine Red Cells",
        "Red Cells Urine",
    ],
    "5821-4": [
        "Pus Cells",
        "Urine Pus Cells",
        "Urine WBC",
        "WBC Urine",
        "Pus Cell",
        "White Blood Cells Urine",
        "Leukocytes Urine Microscopy",
    ],
    "5787-7": [
        "Epithelial Cells",
        "Urine Epithelial Cells",
        "Epithelial Cell",
        "Epithelial Cells Urine",
    ],
    "11277-1": ["Squamous Epithelial Cells", "Squamous Cells", "Squamous Epithelial Cell"],
    "5769-5": ["Bacteria", "Urine Bacteria"],
    "2335-8": [
        "Fecal Occult Blood",
        "Faecal Occult Blood",
        "Stool Occult Blood",
        "Occult Blood Stool",
        "FOBT",
        "Hemoccult",
        "Hemocult",
    ],
    "5822-2": ["Yeast", "Yeast Cells", "Budding Yeast"],
    "5796-8": ["Hyaline Casts", "Hyaline Cast"],
    "5793-5": ["Granular Casts", "Granular Cast"],
    "5774-5": ["Calcium Oxalate Crystals", "Calcium Oxalate"],
    "5817-2": ["Uric Acid Crystals"],
    "60340-7": ["Amorphous Crystals", "Amorphous Deposits", "Amorphous Material"],
    "8247-9": ["Mucus", "Mucus Threads", "Urine Mucus"],
    "30089-7": ["Transitional Epithelial Cells", "Transitional Cells"],
    # --- urine chemistry
    "14957-5": [
        "Urine Microalbumin",
        "Microalbumin",
        "Micro Albumin",
        "Urine Albumin Quantitative",
        "Microalbumin Urine",
        "Albumin Urine Quantitative",
    ],
    "9318-7": [
        "Albumin Creatinine Ratio",
        "ACR",
        "UACR",
        "Urine ACR",
        "Microalbumin/Creatinine Ratio",
        "Urine Albumin/Creatinine Ratio",
        "Albumin/Creatinine Ratio",
        "Microalbumin Creatinine Ratio",
    ],
    "14958-3": ["24 Hour Urine Microalbumin/Creatinine Ratio"],
    "2161-8": ["Urine Creatinine", "Creatinine Urine", "Urinary Creatinine"],
    "2890-2": [
        "Urine Protein/Creatinine Ratio",
        "UPCR",
        "Protein Creatinine Ratio",
        "Protein/Creatinine Ratio",
    ],
    "2888-6": ["Urine Total Protein", "Urine Protein Total"],
    "2955-3": ["Urine Sodium", "Sodium Urine"],
    "2828-2": ["Urine Potassium", "Potassium Urine"],
}

_QUALITATIVE = (
    "[presence]",
    "[identifier]",
    "[interpretation]",
    "[type]",
    "[titer]",
    "appearance of",
    "color of",
    "specimen type",
    "[finding]",
)

# Specimen classes of the catalog (``tasks.labs.parse`` reads names into the same classes).
_SYSTEM_SPECIMENS: tuple[tuple[str, str], ...] = (
    ("control", "control"),  # a control sample, never a patient's result
    ("24 hour urine", "urine_24h"),
    ("urine", "urine"),
    ("cerebral spinal fluid", "csf"),
    ("pleural fluid", "pleural"),
    ("peritoneal fluid", "peritoneal"),
    ("synovial fluid", "synovial"),
    ("bone marrow", "bone_marrow"),
    ("blood or marrow", "bone_marrow"),
    ("stool", "stool"),
    ("body fluid", "body_fluid"),
    ("amniotic fluid", "other"),
    ("arterial blood", "arterial"),
    ("venous blood", "venous"),
    ("capillary blood", "capillary"),
    ("serum or plasma", "serum"),
    ("serum, plasma or blood", "serum"),
    ("platelet poor plasma", "plasma"),
    ("platelet rich plasma", "plasma"),
    ("plasma", "plasma"),
    ("serum", "serum"),
    ("red blood cells", "blood"),
    ("blood", "blood"),
    ("specimen", "any"),  # LOINC's unspecified system: the name need not say it
)
_FLUID_SPECIMENS = {
    "Blood": "blood",
    "Urine": "urine",
    "Cerebrospinal Fluid": "csf",
    "Pleural": "pleural",
    "Ascites": "peritoneal",
    "Joint Fluid": "synovial",
    "Bone Marrow": "bone_marrow",
    "Stool": "stool",
    "Other Body Fluid": "body_fluid",
    "Fluid": "body_fluid",
}

# Decimals a canonical unit carries on reports (converted values are rounded to them, see
# ``tasks.labs.normalize.convert``); per-code overrides where the analyte's scale differs.
UNIT_DECIMALS: dict[str, int] = {
    "mg/dL": 1,
    "g/dL": 1,
    "g/L": 0,
    "mg/L": 1,
    "ug/mL": 2,
    "ug/dL": 0,
    "ug/L": 1,
    "ng/mL": 2,
    "ng/dL": 1,
    "ng/L": 0,
    "pg/mL": 1,
    "mmol/L": 1,
    "umol/L": 0,
    "nmol/L": 1,
    "pmol/L": 1,
    "meq/L": 0,
    "U/L": 0,
    "10*3/uL": 2,
    "10*6/uL": 2,
    "/uL": 0,
    "%": 1,
    "fL": 1,
    "pg": 1,
    "s": 1,
    "mm/h": 0,
    "mmol/mol": 0,
    "mL/min/{1.73_m2}": 0,
    "ug/mL{FEU}": 2,
}
# Per-code decimals (the CSV's decimals_source says "code"); the unit's default otherwise.
CODE_DECIMALS: dict[str, int] = {
    "777-3": 0,  # platelets: whole 10*3/uL (250, not 250.00)
    "6690-2": 1,  # leukocytes 10*3/uL: 7.2
    "60474-4": 1,  # reticulocytes 10*3/uL: 52.3
    "40665-2": 1,
    "2823-3": 1,  # potassium meq/L: 4.5 (sodium, chloride: whole numbers)
    "2160-0": 2,  # creatinine mg/dL
    "1975-2": 1,
    "1968-7": 1,
    "1971-1": 1,
    "2345-7": 0,  # glucose mg/dL
    "2339-0": 0,
    "1558-6": 0,
    "1521-4": 0,
    "27353-2": 0,
    "2093-3": 0,  # lipids mg/dL
    "2085-9": 0,
    "13457-7": 0,
    "18262-6": 0,
    "13458-5": 0,
    "2571-8": 0,
    "43396-1": 0,
    "3016-3": 2,  # TSH
    "3024-7": 2,
    "2132-9": 0,  # vitamin B12 pg/mL
    "6301-6": 1,
    "5811-5": 3,  # specific gravity
    "5631-7": 0,  # copper, zinc ug/dL: 98
    "5763-8": 0,
    "15069-8": 0,  # fructosamine umol/L: 245
    "32546-4": 1,  # G6PD U/g{Hb}: 12.1
    "1825-9": 0,  # alpha-1-antitrypsin mg/dL: 135
}

# LOINC codes that consumer reports give in FEU units; their MIMIC unit is ng/mL FEU.
CANONICAL_OVERRIDES.setdefault("48065-7", "ug/mL{FEU}")
ANALYTE_UNITS.setdefault(
    "48065-7",
    {
        "mg/L{FEU}": (1.0, 0.0),
        "ng/mL{FEU}": (0.001, 0.0),
        # Reports that drop the suffix on this (FEU) code still mean FEU.
        "ug/mL": (1.0, 0.0),
        "mg/L": (1.0, 0.0),
        "ng/mL": (0.001, 0.0),
    },
)
ANALYTE_UNITS.setdefault(
    "48066-5", {"ng/mL{DDU}": (1.0, 0.0), "ug/mL{DDU}": (1000.0, 0.0), "ng/mL": (1.0, 0.0)}
)
CANONICAL_OVERRIDES.setdefault("48066-5", "ng/mL{DDU}")
FAMILY_UNITS.setdefault("ug/mL{FEU}", {"ug/mL{FEU}": 1.0})
FAMILY_UNITS.setdefault("ng/mL{DDU}", {"ng/mL{DDU}": 1.0})

# Items that annotate a report rather than measure anything ("Comments", "Specimen type").
_NOT_A_RESULT = re.compile(r"\bNarrative\b|\bcomments?\b|^Specimen type\b|\bNote\b", re.I)

COLUMNS = (
    "loinc_code",
    "long_name",
    "component",
    "property",
    "specimen",
    "method",
    "canonical_unit",
    "decimals",
    "units",
    "aliases",
    "labels",
    "rank",
    "value_kind",
    "source",
    "decimals_source",
    "series",
)


def _value_kind(long_name: str) -> str:
    lowered = long_name.lower()
    if any(marker in lowered for marker in _QUALITATIVE):
        return "ordinal"
    return "numeric"


# Long common names the reference abbreviates (the system and method are part of the code).
LONG_NAME_OVERRIDES: dict[str, str] = {
    "5902-2": "Prothrombin time (PT) in Platelet poor plasma by Coagulation assay",
}


def _component(long_name: str) -> str:
    """The LOINC component: the long name without its property bracket, up to its system.

    Some components continue after the bracket ("Oxygen [Partial pressure] saturation adjusted
    to 0.5" is P50, not pO2), so the bracket is cut out rather than cut at.
    """
    long_name = re.sub(r" \[[^\]]*\]", "", long_name)
    head = re.split(
        r" in (?:Serum|Plasma|Blood|Urine|Platelet|Red|Body|Cerebral|Pleural|Peritoneal"
        r"|Synovial|Stool|Bone|Arterial|Venous|Capillary|Amniotic|Specimen|Control)"
        r"| of (?:Blood|Urine)| by ",
        long_name,
        maxsplit=1,
    )[0]
    challenge = re.search(r" --.+$", long_name)
    return head.strip() + (challenge.group(0) if challenge else "")


def _specimen(long_name: str, reference_fluid: str) -> str:
    match = re.search(r" (?:in|of) (.+?)(?: by |$| --)", long_name)
    system = match.group(1).lower() if match else ""
    for phrase, specimen in _SYSTEM_SPECIMENS:
        if phrase in system:
            return specimen
    return _FLUID_SPECIMENS.get(reference_fluid, "other")


def _read_reference(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [row for row in csv.DictReader(handle) if row["omop_concept_code"].strip()]


def _row_count(row: dict[str, str]) -> int:
    return int(row["labevents_row_count"] or 0)


def _units_for(code: str, canonical: str) -> dict[str, tuple[float, float]]:
    units = {unit: (factor, 0.0) for unit, factor in FAMILY_UNITS.get(canonical, {}).items()}
    units.setdefault(canonical, (1.0, 0.0))
    units.update(ANALYTE_UNITS.get(code, {}))
    return units


def format_units(units: dict[str, tuple[float, float]]) -> str:
    """``mg/dL=1; mmol/L=18.016; %=10.929,-23.49735``: factor (and offset) to the canonical."""
    parts = []
    for unit, (factor, offset) in units.items():
        text = f"{unit}={factor:g}"
        if offset:
            text += f",{offset:g}"
        parts.append(text)
    return "; ".join(parts)


def _claimed_elsewhere(label: str, code: str) -> bool:
    """True when a curated alias of another test has the same spelling as this hospital label.

    Hospital labels are terse ("25-OH Vitamin D" on the D3-only code, "Eosinophils" on the
    ascites code); the curated aliases say which test a report means by that name, so they win.
    """
    wanted = label.casefold()
    return any(
        alias.casefold() == wanted
        for other, aliases in ALIASES.items()
        if other != code
        for alias in aliases
    )


def _reference_unit(raw: str) -> str:
    first = raw.split("|")[0].strip()
    if first in REFERENCE_UNITS:
        return REFERENCE_UNITS[first]
    from tasks.labs.normalize import normalize_unit

    normalized = normalize_unit(first)
    return normalized.canonical if normalized.known else ""


def _make_test(
    code: str,
    long_name: str,
    specimen: str,
    canonical: str,
    rank: int,
    kind: str,
    labels: list[str],
    source: str,
) -> dict[str, str]:
    from tasks.labs.parse import parse_name

    parsed = parse_name(long_name)
    if kind == "ordinal":
        canonical = ""
    elif not canonical and parsed.property == "fraction":
        canonical = "%"  # "/100 leukocytes", "/100 cells": the reference left the unit out
    aliases = list(ALIASES.get(code, []))
    # Each hospital label is one more real spelling, though a terse one: "Eosinophils" on an
    # ascites code says nothing of ascites, so the matcher asks for the specimen on such codes.
    kept_labels = [
        label
        for label in labels
        if label and label not in aliases and not _claimed_elsewhere(label, code)
    ]
    decimals = CODE_DECIMALS.get(code, UNIT_DECIMALS.get(canonical, 2))
    # Where the decimals come from: this code's entry, its unit's default, or nothing (a test
    # without a unit is never aggregated, so its decimals describe nothing).
    if code in CODE_DECIMALS:
        decimals_source = "code"
    elif canonical in UNIT_DECIMALS:
        decimals_source = f"unit {canonical}"
    else:
        decimals_source = "default" if canonical else "no unit"
    return {
        "loinc_code": code,
        "long_name": long_name,
        "component": _component(long_name),
        "property": parsed.property or "",
        "specimen": specimen,
        "method": parsed.method or "",
        "canonical_unit": canonical,
        "decimals": str(decimals),
        "units": format_units(_units_for(code, canonical)),
        "aliases": " | ".join(aliases),
        "labels": " | ".join(kept_labels),
        "rank": str(rank),
        "value_kind": kind,
        "source": source,
        "decimals_source": decimals_source,
        "series": SERIES.get(code, ""),
    }


def build(reference_path: Path) -> list[dict[str, str]]:
    rows = sorted(_read_reference(reference_path), key=lambda row: -_row_count(row))
    labels: dict[str, list[str]] = {}
    first_row: dict[str, dict[str, str]] = {}
    for row in rows:
        code = row["omop_concept_code"].strip()
        first_row.setdefault(code, row)
        labels.setdefault(code, [])
        if row["label"] not in labels[code]:
            labels[code].append(row["label"])

    tests: dict[str, dict[str, str]] = {}
    for rank, (code, row) in enumerate(first_row.items(), start=1):
        long_name = LONG_NAME_OVERRIDES.get(code, row["omop_concept_name"])
        if not long_name or _NOT_A_RESULT.search(long_name):
            continue
        canonical = CANONICAL_OVERRIDES.get(code, _reference_unit(row["valueuom"]))
        tests[code] = _make_test(
            code,
            long_name,
            _specimen(long_name, row["fluid"]),
            canonical,
            rank,
            _value_kind(long_name),
            labels[code],
            "mimic-iv",
        )

    for offset, code in enumerate(ADDITIONS, start=1):
        if code in tests:
            continue
        long_name, specimen, kind = EXTRA_NAMES[code]
        canonical = CANONICAL_OVERRIDES.get(code, "")
        tests[code] = _make_test(
            code, long_name, specimen, canonical, len(first_row) + offset, kind, [], "panel"
        )

    missing_aliases = sorted(set(ALIASES) - set(tests))
    if missing_aliases:
        raise SystemExit(f"aliases for codes not in the catalog: {missing_aliases}")
    return sorted(tests.values(), key=lambda test: int(test["rank"]))


def write_catalog(tests: list[dict[str, str]], out: Path) -> None:
    with out.open("w", newline="", encoding="utf-8") as handle:
        # The notice travels inside the file: "#" lines are comments to the catalog reader.
        for line in textwrap.wrap(NOTICE, 98):
            handle.write(f"# {line}\n")
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(tests)


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit(__doc__)
    reference = Path(argv[1])
    out = Path(argv[2]) if len(argv) > 2 else DEFAULT_OUT
    tests = build(reference)
    write_catalog(tests, out)
    print(f"wrote {len(tests)} tests to {out}")


if __name__ == "__main__":
    main(sys.argv)
