"""The results contract in code (analysis/schema.py) and in prose (results/README.md) name the same
columns; the store refuses a table that breaks it."""

import re
from pathlib import Path

import pyarrow as pa
import pytest

from analysis import schema

README = Path(__file__).resolve().parents[1] / "results" / "README.md"


def documented() -> dict[str, set[str]]:
    """table -> the column names in the first cell of each row of its '## <table>:' section's table."""
    out, table, columns = {}, None, False
    for line in README.read_text().splitlines():
        heading = re.match(r"## (\w+): ", line)
        if heading:
            table = heading.group(1)
            out[table] = set()
        elif line.startswith("## "):
            table = None
        if not line.startswith("|"):
            columns = False  # a markdown table ended
        elif line.startswith("| column"):
            columns = True  # a table of columns starts (others, e.g. of sizes, are not read)
        elif table and columns and not line.startswith("|---"):
            out[table] |= {n.strip().strip("`") for n in line.split("|")[1].split(",")}
    return out


def test_the_readme_documents_exactly_the_schema_columns():
    docs = documented()
    assert set(docs) == set(schema.TABLES)
    for table, fields in schema.SCHEMAS.items():
        assert docs[table] == set(fields.names), (table, docs[table] ^ set(fields.names))


def test_check_names_the_column_that_breaks_the_contract():
    good = pa.schema([schema.SCHEMAS["norms"].field(n) for n in schema.SCHEMAS["norms"].names if n != "arch"])
    schema.check("norms", good)  # arch is optional (convergence grids only)
    with pytest.raises(ValueError, match=r"columns \['extra'\] not in it"):
        schema.check("norms", good.append(pa.field("extra", pa.int8())))
    with pytest.raises(ValueError, match=r"\['norm'\] missing"):
        schema.check("norms", good.remove(good.get_field_index("norm")))
    with pytest.raises(ValueError, match="norms.norm is double, the contract says float"):
        schema.check("norms", good.set(good.get_field_index("norm"), pa.field("norm", pa.float64())))
    fp16 = schema.SCHEMAS["examples"]
    schema.check("examples", fp16.set(fp16.get_field_index("loss"), pa.field("loss", pa.float16())))


def test_the_store_refuses_a_table_that_breaks_the_contract(tmp_path):
    from sweep.store import Store

    bad = pa.table({"seed": pa.array([0], pa.int32()), "surprise": [1]})
    with pytest.raises(ValueError, match="trials table breaks the results contract"):
        Store(tmp_path, "s").write_fragment("f", {"trials": bad}, {})
    assert not (tmp_path / "s").exists()  # nothing of the fragment was written
