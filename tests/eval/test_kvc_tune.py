"""kvc tune: per-layer configs that fit the budget, on the repository's real
two-layer fixture (and on kvlab's full dump when ../shared is present)."""
import json
import os
import re

import pytest

from conftest import FIXTURE, KVLAB, needs_kvlab, run_kvc
from kvc_eval.codec import import_kvcodec
from kvc_eval.safetensors import SafetensorsFile, write_safetensors


def tune(tmp_path, source, budget, *extra):
    out = tmp_path / f"tuned-{budget}.txt"
    p = run_kvc("tune", source, "--budget", str(budget), "-o", str(out), "--json", *extra)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout), out


def encoded_bits(tmp_path, source, config):
    """Bits per element of `kvc encode --config`: the config runs like a preset."""
    p = run_kvc("encode", source, "-o", str(tmp_path / "x.kvc"), "--config", str(config))
    assert p.returncode == 0, p.stderr
    return float(re.search(r"([0-9.]+) bits per element", p.stdout).group(1))


@pytest.mark.parametrize("budget", [2.5, 4, 6.5])
def test_fits_budget_and_runs_as_config(tmp_path, budget):
    r, out = tune(tmp_path, FIXTURE, budget)
    assert r["queries"] and r["bits_per_element"] <= budget
    # The whole stream, headers included, measured by kvc encode.
    assert encoded_bits(tmp_path, FIXTURE, out) == pytest.approx(r["bits_per_element"], abs=1e-4)
    text = out.read_text()
    assert text.startswith("kvcodec-config 1\n") and text == r["config"]
    config = import_kvcodec().Config.from_text(text)
    for layer in r["layers"]:
        assert config.layer(layer["layer"], "k", 2).text == layer["k_method"]
        assert config.layer(layer["layer"], "v", 2).text == layer["v_method"]


def test_more_bits_less_error(tmp_path):
    results = [tune(tmp_path, FIXTURE, b)[0] for b in (2.5, 3.5, 5, 8)]
    bits = [r["bits_per_element"] for r in results]
    costs = [r["total_cost"] for r in results]
    assert bits == sorted(bits) and costs == sorted(costs, reverse=True)
    assert costs[-1] < costs[0] / 100


def test_key_weight_moves_bits_to_keys(tmp_path):
    """The heavier keys weigh, the larger their share of the bits."""
    shares = []
    for weight in ("0.0625", "1", "16"):
        r, _ = tune(tmp_path, FIXTURE, 4, "--key-weight", weight)
        k = sum(l["k_bits"] for l in r["layers"])
        shares.append(k / (k + sum(l["v_bits"] for l in r["layers"])))
    assert shares[0] < 0.5 < shares[2] and shares == sorted(shares)


def test_without_queries(tmp_path):
    """A dump without layer{L}.q (or --no-queries): K/V relative error."""
    st = SafetensorsFile(FIXTURE)
    stripped = tmp_path / "no-q.safetensors"
    write_safetensors(str(stripped), [(n, st.get(n, None)) for n in st.names()
                                      if not n.endswith(".q")], st.metadata)
    for source, extra in ((str(stripped), ()), (FIXTURE, ("--no-queries",))):
        r, out = tune(tmp_path, source, 4, *extra)
        assert not r["queries"] and "no queries" in r["cost_measure"]
        assert r["bits_per_element"] <= 4 and "no queries" in out.read_text()


def test_candidates(tmp_path):
    r, _ = tune(tmp_path, FIXTURE, 4, "--candidates", "tq-mse-b2,tq-mse-b4,tq-mse-b6")
    assert {l["k_method"] for l in r["layers"]} | {l["v_method"] for l in r["layers"]} <= \
        {"tq-mse-b2", "tq-mse-b4", "tq-mse-b6"}


def test_candidates_with_options(tmp_path):
    """Options take commas too: a piece without '-' belongs to the method before it."""
    methods = {"tq-mse-b2:nc,center", "tq-mse-b4:nc,rot=none", "gtq-b3:nc,center"}
    r, _ = tune(tmp_path, FIXTURE, 4, "--candidates",
                "tq-mse-b2:center,nc,tq-mse-b4:nc,rot=none,gtq-b3:nc,center")
    used = {l["k_method"] for l in r["layers"]} | {l["v_method"] for l in r["layers"]}
    assert used <= methods and used


@pytest.mark.parametrize("args,message", [
    (["--budget", "1"], "below what the cheapest candidates take"),
    (["--budget", "four"], "--budget must be bits per element"),
    (["--budget", "4", "--candidates", "tq-mse-b9"], "tq-mse-b9"),
    (["--budget", "4", "--key-weight", "-1"], "--key-weight must be a positive number"),
])
def test_errors(tmp_path, args, message):
    p = run_kvc("tune", FIXTURE, "-o", str(tmp_path / "c.txt"), *args)
    assert p.returncode != 0 and message in p.stderr
    assert not (tmp_path / "c.txt").exists()


@needs_kvlab
def test_kvlab_dump_in_seconds(tmp_path):
    source = os.path.join(KVLAB, "kv", "kvlab-A-linux-1024.safetensors")
    r, _ = tune(tmp_path, source, 4.25)
    assert r["queries"] and 4.2 < r["bits_per_element"] <= 4.25
    assert r["seconds"] < 120  # About 7 s of CPU on one core.
