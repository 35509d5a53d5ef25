"""The XRT host runtime (aielower/backends/aie/runtime.py) on the emulated XRT device: generate() against the host
emulator and the reference backend with AIE numerics on tiny MHA, GQA and odd-size models; buffers allocated once;
the builds (emulated, and the NPU build through the Makefile with a stand-in toolchain); bad use."""

from __future__ import annotations

import json
import shutil
import stat
import textwrap

import numpy as np
import pytest

import aielower
from aielower.backends.aie.emulated_xrt import EmulatedBo, EmulatedXrt, xclBOSyncDirection
from aielower.backends.aie.kernels import KernelLibrary
from aielower.backends.aie.runtime import AieRuntime
from aielower.backends.ref.generation import SamplingConfig, generate_tokens
from aielower.errors import AielowerError
from tests.backends.aie.test_emulator import MODELS, QUANT
from tests.conftest import tiny_qwen2

NEW_TOKENS = 40


def bf16_tie(logits: np.ndarray) -> float:
    """How close two logits of one row may be and still count as a tie: the kernels and the reference round at the
    same points but may sum in another order, which moves a logit by about one bf16 step (2**-8 relative) of the
    row's largest magnitude, and a little more through the layers."""
    return 2.0 ** -6 * float(np.abs(logits).max())


@pytest.fixture(scope="module", params=sorted(MODELS))
def built(request, tmp_path_factory):
    model = tiny_qwen2(**MODELS[request.param])
    art = aielower.compile(model, target="aie", quant=QUANT, max_seq_len=64,
                           out_dir=tmp_path_factory.mktemp(request.param) / "aie")
    art.build(emulate=True)
    ref = aielower.compile(model, quant=QUANT, max_seq_len=64, numerics="aie")
    return art, ref


@pytest.mark.parametrize("seed", [0, 1])
def test_generate_on_the_emulated_device_is_greedy_under_the_reference(built, seed):
    art, ref = built
    ids = np.random.default_rng(seed).integers(0, 128, size=(1, 9))
    tokens = art.generate(ids, NEW_TOKENS, device="emulator")
    assert tokens.shape == (1, 9 + NEW_TOKENS)
    # The runtime drives the same designs and kernels as the host emulator: the same tokens, bit for bit.
    emulated, _ = generate_tokens(art.emulate_decode, art.new_cache(1), ids, NEW_TOKENS, 64, SamplingConfig(), [])
    np.testing.assert_array_equal(tokens, emulated)
    # Against the reference with AIE numerics: every new token is the reference's greedy choice given the tokens
    # before it, up to a bf16 tie (the reference's logits over the runtime's sequence, teacher-forced).
    logits = ref(tokens[:, :-1])[0, 8:]
    picked = tokens[0, 9:]
    for step, (row, token) in enumerate(zip(logits, picked)):
        assert row[token] >= row.max() - bf16_tie(row), (step, token, row.argmax(), row.max() - row[token])
    # Where the reference's own greedy path has no such tie, the tokens are the same.
    expected = ref.generate(ids, NEW_TOKENS)
    path = ref(expected[:, :-1])[0, 8:]
    margins = [np.sort(r)[-1] - np.sort(r)[-2] - bf16_tie(r) for r in path]
    if min(margins) > 0:
        np.testing.assert_array_equal(tokens, expected)
    stats = art.last_stats
    assert stats.new_tokens == NEW_TOKENS and stats.prompt_tokens == 9 and stats.ms_per_token > 0
    assert art.runtime("emulator").timing == "emulated"


def test_buffers_are_allocated_once_and_a_step_copies_only_its_kv_rows(built, monkeypatch):
    art, _ = built
    runtime = AieRuntime(art.out_dir, "emulator")
    created = []
    original = EmulatedBo.__init__

    def counting(self, *args, **kwargs):
        created.append(args[1])
        original(self, *args, **kwargs)

    monkeypatch.setattr(EmulatedBo, "__init__", counting)
    ids = np.random.default_rng(3).integers(0, 128, size=(1, 5))
    runtime.generate(ids, 3)
    first = len(created)
    assert first > 0
    cache = runtime.new_cache(1)
    runtime.decode(ids, 0, cache)
    assert len(created) == first, "a second run allocated buffer objects again"
    kv_bytes = sum(c.data.nbytes for c in {id(c): c for c in cache}.values())
    before = runtime.launcher.bytes_to_device
    runtime.decode(np.array([[7]]), 5, cache)
    step = runtime.launcher.bytes_to_device - before
    weights = sum(b.nbytes for b in runtime.program.blobs.values())
    assert step < kv_bytes and step < weights, (step, kv_bytes, weights)


def test_a_decode_step_writes_no_cache_row_at_its_position_before_its_attention_launch(built, monkeypatch):
    # The step's keys and values come with the query records (a place that does not depend on the position) and
    # are appended to the cache at the position after the launch that read them: the next launch sends them.
    from aielower.backends.aie.families import gemv_attention
    from aielower.backends.aie.launcher import Resident
    from aielower.backends.aie.plan import plan_of

    art, _ = built
    runtime = AieRuntime(art.out_dir, "emulator")
    plan = next(p for op in runtime.module.functions["decode"].ops
                if (p := plan_of(op)) is not None and p.kind == "attention")  # every layer's is alike
    (launch,) = plan.launches_for(1)
    joined = gemv_attention.is_attention(launch)  # on the GEMV configuration: records in x, the cache as bytes in w
    assert joined == (plan.shape["kv_heads"] % 4 == 0)  # where the KV heads fill columns of the GEMVs' 4 rows
    cache = runtime.new_cache(1)
    runtime.decode(np.random.default_rng(4).integers(0, 128, size=(1, 5)), 0, cache)
    seen = []
    original = runtime.launcher.launch

    def recording(design, sequence, tensors):
        kv = [t for t in tensors.values() if isinstance(t, Resident) and t.key.startswith("kv/")]
        seen.extend((sequence, t, tensors["x" if joined else "q"]) for t in kv)
        original(design, sequence, tensors)

    monkeypatch.setattr(runtime.launcher, "launch", recording)
    runtime.decode(np.array([[7]]), 5, cache)
    layer = cache[0]
    kv_heads, d_pad, tkv = layer.layout
    tile = 2 * tkv * d_pad
    item = 2 if joined else 1  # the changed ranges of a byte view count bytes
    assert len(seen) == len({id(c) for c in cache})  # one attention launch per layer
    for sequence, resident, q in seen:
        assert sequence.endswith("kv_tiles_1")  # the 5 cache rows before the step: one tile
        # only rows before the step (the prompt's, appended after its launch when its rows came in q too): the
        # step's own rows are in the query records
        rows = [((a // item % tile) % (tile // 2) // d_pad, n // item // d_pad) for a, n in resident.changed]
        assert all(first + n <= 5 for first, n in rows)
        # the cache tiles, and after them the bytes a weight tile of the GEMV configuration reads past the last row
        assert layer.data[0].size == kv_heads * layer.rows * 2 * d_pad + layer.tail
    assert (layer.tail > 0) == joined
    appended = layer.pending(0)  # this step's row, appended at position 5 after the launch
    assert sorted(a % tile // d_pad for a, _ in appended) == [5] * kv_heads + [tkv + 5] * kv_heads
    # each record carries its KV head's value of the step, the row the host appended to the cache after the launch
    q = seen[0][2].reshape(kv_heads, -1)
    value_at = (plan.shape["gq"] + 1) * d_pad  # after the gq query rows and the key
    cached = layer.data[0, : layer.data.shape[1] - layer.tail].reshape(kv_heads, layer.rows // tkv, 2, tkv,
                                                                         d_pad)[:, 0, 1, 5]
    np.testing.assert_array_equal(q[:, value_at : value_at + d_pad], cached)
    assert cached.any()


def test_a_negative_position_is_refused_before_anything_is_written(built):
    art, _ = built
    runtime = AieRuntime(art.out_dir, "emulator")
    cache = runtime.new_cache(1)
    with pytest.raises(AielowerError, match="position -1 is negative"):
        runtime.decode(np.array([[7]]), -1, cache)
    assert all(layer.data is None for layer in cache)


def test_a_new_cache_takes_over_the_device_buffer_whole(built):
    """A second generation reuses the KV buffers of the first (allocated once) and must not keep its rows."""
    from aielower.backends.aie.designs.model import MemrefType

    art, _ = built
    runtime = AieRuntime(art.out_dir, "emulator")
    runtime.generate(np.random.default_rng(5).integers(0, 128, size=(1, 9)), 4)
    cache = runtime.new_cache(1)
    runtime.decode(np.array([[3, 4]]), 0, cache)
    runtime.decode(np.array([[5]]), 2, cache)  # a decode step: it sends the rows of the first launch
    layer = cache[0]
    bo, _ = runtime.launcher._resident[f"kv/{layer.name}/0"]
    device = bo.device_view(MemrefType(layer.data[0].size, "bf16"))
    host = layer.data[0].copy()
    # Where the step's rows came with the queries (a decode design), the host appended them to its cache after the
    # launch: they reach the device with the next launch. Everything else is as in the new cache (rows 3.. zero).
    for start, n in layer.pending(0):
        host[start : start + n] = device[start : start + n]
    np.testing.assert_array_equal(device, host)
    assert np.count_nonzero(device) > 0


def test_sampling_with_a_seed_is_reproducible(built):
    art, _ = built
    ids = np.random.default_rng(4).integers(0, 128, size=(1, 6))
    options = dict(do_sample=True, temperature=0.8, top_k=20, seed=11)
    a = art.generate(ids, 10, device="emulator", **options)
    b = art.generate(ids, 10, device="emulator", **options)
    np.testing.assert_array_equal(a, b)


def test_runs_are_recorded_in_the_report_with_their_label(built):
    from aielower.backends.aie.report import record_run
    from aielower.backends.ref.generation import GenerationStats

    art, _ = built
    before = json.loads((art.out_dir / "report.json").read_text()).get("runs", [])
    art.generate(np.array([[1, 2, 3]]), 3, device="emulator")
    row = art.record_run("emulator")
    assert row["timing"] == "emulated" and row["prompt_tokens"] == 3 and row["new_tokens"] == 3
    measured = record_run(art.out_dir, GenerationStats(5, 0.25, [0.1, 0.1]), "measured", "Strix Point (npu2)")
    assert measured["ms_per_token"] == pytest.approx(100.0) and measured["prefill_ms"] == pytest.approx(250.0)
    runs = json.loads((art.out_dir / "report.json").read_text())["runs"]
    assert runs[len(before):] == [row, measured]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in (art.out_dir / "report.md").read_text()
            .split("## Runs of this artifact")[1].split("\n## ")[0].splitlines() if line.startswith("| ")]
    assert rows[-1][1:] == ["measured", "Strix Point (npu2)", "5", "3", "250", "100", "10"]
    assert rows[-2][1:3] == ["emulated", "emulated npu2 on this CPU"]
    with pytest.raises(AielowerError, match="'measured' or 'emulated', not 'modelled'"):
        record_run(art.out_dir, GenerationStats(5, 0.25, [0.1]), "modelled", "x")
    with pytest.raises(AielowerError, match="generate\\(..., device='npu'\\) has not run"):
        art.record_run("npu")


# --------------------------------------------------------------------------- the emulated device itself


def test_an_emulated_buffer_object_needs_its_syncs(tmp_path):
    xrt = EmulatedXrt("npu2", kernels=None)
    bo = xrt.bo(xrt.device(0), 16, xrt.bo.host_only, 3)
    view = np.frombuffer(bo.map(), np.uint8)
    view[:] = 7
    from aielower.backends.aie.designs.model import MemrefType

    assert (bo.device_view(MemrefType(16, "i8")) == 0).all(), "the device saw host memory without a sync"
    bo.sync(xclBOSyncDirection.XCL_BO_SYNC_BO_TO_DEVICE, 8, 0)
    assert list(bo.device_view(MemrefType(16, "i8"))) == [7] * 8 + [0] * 8
    with pytest.raises(AielowerError, match="outside a buffer object of 16"):
        bo.sync(xclBOSyncDirection.XCL_BO_SYNC_BO_TO_DEVICE, 8, 12)


# --------------------------------------------------------------------------- bad use


def test_a_directory_that_is_not_an_artifact(tmp_path):
    with pytest.raises(AielowerError, match="holds no manifest.json"):
        AieRuntime(tmp_path, "emulator")


@pytest.fixture(scope="module")
def small_artifact(tmp_path_factory):
    """An artifact of a one-layer model, compiled (not built): tests copy it and break the copy."""
    model = tiny_qwen2(num_hidden_layers=1)
    out = tmp_path_factory.mktemp("small") / "aie"
    aielower.compile(model, target="aie", quant=QUANT, max_seq_len=16, out_dir=out)
    return out


def _copy(small_artifact, tmp_path):
    out = tmp_path / "aie"
    shutil.copytree(small_artifact, out)
    return out


def test_an_artifact_that_was_not_built(small_artifact, tmp_path):
    out = _copy(small_artifact, tmp_path)
    with pytest.raises(AielowerError, match=r"has not been built for the emulated device: run 'aielower build .* "
                                            r"--emulate' first"):
        AieRuntime(out, "emulator")
    with pytest.raises(AielowerError, match="has not been built for the NPU"):
        AieRuntime(out, "npu")


def test_an_artifact_built_for_another_device(small_artifact, tmp_path):
    from aielower.backends.aie.device_build import build_for_emulator

    out = _copy(small_artifact, tmp_path)
    record = build_for_emulator(out)
    npu1 = EmulatedXrt("npu1", KernelLibrary(out / record["kernels"], []))
    runtime = AieRuntime(out, "emulator", xrt=npu1)
    with pytest.raises(AielowerError, match=r"is built for npu2; this \(emulated\) device is a npu1"):
        runtime.generate(np.array([[1, 2, 3]]), 2)


def test_a_missing_xclbin(small_artifact, tmp_path):
    from aielower.backends.aie.device_build import build_for_emulator

    out = _copy(small_artifact, tmp_path)
    record = build_for_emulator(out)
    victim = next(iter(record["designs"].values()))["xclbin"]
    (out / victim).unlink()
    with pytest.raises(AielowerError, match=f"file\\(s\\) of the build are missing, e.g. {victim}: rebuild with "
                                            "'aielower build .* --emulate'"):
        AieRuntime(out, "emulator")


def test_a_run_that_fails_on_the_device_names_the_design(small_artifact, tmp_path):
    """Instruction files swapped between two designs: the device refuses the run, the runtime says which."""
    from aielower.backends.aie.device_build import build_for_emulator

    out = _copy(small_artifact, tmp_path)
    record = build_for_emulator(out)
    # two designs of one sequence each that a decode step runs
    (first, a), (second, b) = [(n, f["instructions"][""]) for n, f in record["designs"].items()
                               if "" in f["instructions"] and "_b1_" in n][:2]
    (out / a).write_bytes((out / b).read_bytes())
    runtime = AieRuntime(out, "emulator")
    with pytest.raises(AielowerError, match=f"the run of design {first} ended in state 5: the instruction stream is "
                                            f"for design '{second}'"):
        runtime.generate(np.array([[1, 2, 3]]), 2)


def test_a_manifest_that_does_not_describe_module_ir(small_artifact, tmp_path):
    from aielower.backends.aie.device_build import build_for_emulator

    out = _copy(small_artifact, tmp_path)
    build_for_emulator(out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["schedule"]["decode"].pop()
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(AielowerError, match="module.ir and the launch schedule of manifest.json differ"):
        AieRuntime(out, "emulator")


def test_a_cache_too_small_for_prompt_and_new_tokens(small_artifact, tmp_path):
    from aielower.backends.aie.device_build import build_for_emulator

    out = _copy(small_artifact, tmp_path)
    build_for_emulator(out)
    runtime = AieRuntime(out, "emulator")
    with pytest.raises(AielowerError, match="sequence of 20 tokens does not fit the KV cache of 16"):
        runtime.generate(np.arange(10)[None], 11)
    with pytest.raises(AielowerError, match=r"input_ids out of range \[0, 128\)"):
        runtime.generate(np.array([[500]]), 1)


def test_a_prompt_longer_than_the_largest_bucket_runs_in_chunks(small_artifact, tmp_path, monkeypatch):
    """One decode call runs at most the largest bucket's rows: a longer prompt runs chunk after chunk, each at its
    own position over the cache the ones before it filled, and the logits are the last chunk's."""
    from aielower.backends.aie.device_build import build_for_emulator

    out = _copy(small_artifact, tmp_path)
    build_for_emulator(out)
    runtime = AieRuntime(out, "emulator")
    rows = runtime.prompt_rows
    assert rows == 128  # the small artifact's 16-position cache is planned for buckets 1 and 128
    monkeypatch.setattr(AieRuntime, "max_seq_len", property(lambda self: 3 * rows))
    calls = []

    def run(function, ids, position, *cache):
        calls.append((function, ids.copy(), int(position[0]), len(cache)))
        return (np.full((ids.shape[0], 1, 4), float(len(calls))),)

    monkeypatch.setattr(runtime.program, "run", run)
    cache = runtime.new_cache(1)
    ids = np.arange(2 * rows + 5)[None] % 100
    logits = runtime.decode(ids, 7, cache)
    assert [(f, c.shape[1], p) for f, c, p, _ in calls] == [("decode", rows, 7), ("decode", rows, 7 + rows),
                                                             ("decode", 5, 7 + 2 * rows)]
    np.testing.assert_array_equal(np.concatenate([c for _, c, _, _ in calls], axis=1), ids)
    assert all(n == len(cache) for *_, n in calls) and logits[0, 0, 0] == 3.0


def test_a_prompt_in_chunks_gives_the_logits_of_one_call(small_artifact, tmp_path, monkeypatch):
    """Emulated: a prompt run in three chunks (each over the cache the ones before filled, at its position) gives
    the logits of one call, to bf16 rounding (the chunks' attention sums in other tiles)."""
    from aielower.backends.aie.device_build import build_for_emulator

    out = _copy(small_artifact, tmp_path)
    build_for_emulator(out)
    runtime = AieRuntime(out, "emulator")
    ids = (np.arange(11)[None] * 7) % 100
    whole = runtime.decode(ids, 0, runtime.new_cache(1))
    monkeypatch.setattr(AieRuntime, "prompt_rows", property(lambda self: 4))
    chunked = runtime.decode(ids, 0, runtime.new_cache(1))
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=bf16_tie(whole))
    assert np.argmax(chunked[0, -1]) == np.argmax(whole[0, -1])


def test_no_xrt_on_this_machine_says_what_is_missing(small_artifact, tmp_path):
    out = _copy(small_artifact, tmp_path)
    manifest = json.loads((out / "manifest.json").read_text())
    designs = {d["name"]: {"xclbin": "module.ir", "instructions": {}} for d in manifest["designs"]}
    manifest["builds"] = {"npu": {"device": "npu2", "designs": designs}}  # as if built elsewhere
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(AielowerError, match=r"needs XRT's Python bindings \(pyxrt\).*device='emulator'"):
        AieRuntime(out, "npu")


def test_a_real_xclbin_on_the_emulated_device_is_refused(tmp_path):
    path = tmp_path / "design.xclbin"
    path.write_bytes(b"xclbin2\0" + bytes(64))
    with pytest.raises(AielowerError, match="is not an emulated xclbin.*runs on an NPU"):
        EmulatedXrt("npu2", kernels=None).xclbin(str(path))


# --------------------------------------------------------------------------- the NPU build (Makefile)


def _tool(path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.mark.skipif(shutil.which("make") is None, reason="the NPU build runs make, which is not installed")
def test_the_npu_build_runs_the_makefile_and_records_its_outputs(small_artifact, tmp_path):
    """A stand-in Peano and aiecc (shell scripts that print the targeted versions and write the files asked for):
    the build runs check-toolchain and make, and records the xclbins and instruction files; the runtime reads them
    from there (the emulated device then refuses them: they are not emulated xclbins)."""
    from aielower.backends.aie import toolchain
    from aielower.backends.aie.device_build import build_for_npu

    out = _copy(small_artifact, tmp_path)
    peano, mlir_aie = tmp_path / "peano", tmp_path / "mlir-aie"
    _tool(peano / "bin" / "clang++", """\
        [ "$1" = --version ] && { echo "clang version 19 (llvm-aie)"; exit 0; }
        while [ $# -gt 0 ]; do [ "$1" = -o ] && { shift; echo obj > "$1"; }; shift; done
        """)
    _tool(mlir_aie / "bin" / "aiecc", f"""\
        [ "$1" = --aie-version ] && {{ echo "aiecc {toolchain.MLIR_AIE_COMMIT}"; exit 0; }}
        for a in "$@"; do case "$a" in
          --xclbin-name=*) echo xclbin > "${{a#--xclbin-name=}}";;
          --npu-insts-name=*) insts="${{a#--npu-insts-name=}}";;
          *.mlir) design="$a";;
        esac; done
        seqs=$(sed -n 's/.*aie.runtime_sequence @\\([A-Za-z0-9_]*\\).*/\\1/p' "$design")
        if [ -z "$seqs" ]; then echo insts > "$insts"; else
          for s in $seqs; do echo insts > "$(echo "$insts" | sed "s/{{1}}/$s/")"; done; fi
        """)
    with pytest.raises(AielowerError, match="(?s)the toolchain check failed.*error: no aiecc at"):
        build_for_npu(out, peano, tmp_path / "nowhere")
    record = build_for_npu(out, peano, mlir_aie)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["builds"]["npu"] == record
    names = {d["name"] for d in manifest["designs"]}
    assert set(record["designs"]) == names
    for files in record["designs"].values():
        assert (out / files["xclbin"]).read_text() == "xclbin\n"
        assert all((out / p).is_file() for p in files["instructions"].values())
    assert any(line.startswith("check-toolchain: toolchain found") for line in record["toolchain"])
    # The stand-in Peano has no llvm_aie wheel beside it: the version it cannot confirm is a recorded warning.
    assert any(line.startswith("warning: cannot tell which llvm-aie nightly") for line in record["toolchain"])
    runtime = AieRuntime(out, "npu", xrt=EmulatedXrt("npu2", kernels=None))
    with pytest.raises(AielowerError, match="is not an emulated xclbin"):
        runtime.generate(np.array([[1, 2]]), 1)


# --------------------------------------------------------------------------- the command line


def test_cli_run_on_the_emulated_device(tiny_model_dir, tmp_path, capsys):
    from aielower.cli import main

    out = tmp_path / "aie"
    assert main(["run", str(tiny_model_dir), "--prompt", "hello", "--max-new-tokens", "4", "--target", "aie",
                 "-o", str(out), "--emulate", "--quant", "w4g32"]) == 0
    printed = capsys.readouterr().out
    assert "emulated: the XRT host runtime on the emulated device" in printed
    assert json.loads((out / "manifest.json").read_text())["builds"]["emulator"]["device"] == "npu2"
    (run,) = json.loads((out / "report.json").read_text())["runs"]
    assert run["timing"] == "emulated" and run["device"] == "emulated npu2 on this CPU"
    assert run["new_tokens"] == 4 and run["ms_per_token"] > 0
    assert "## Runs of this artifact" in (out / "report.md").read_text()


def test_cli_run_without_an_npu_says_what_is_missing(tiny_model_dir, tmp_path, capsys, monkeypatch):
    from aielower.cli import main

    monkeypatch.delenv("PEANO_INSTALL_DIR", raising=False)
    monkeypatch.delenv("MLIR_AIE_DIR", raising=False)
    assert main(["run", str(tiny_model_dir), "--prompt", "hi", "--target", "aie", "-o", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "needs XRT's Python bindings (pyxrt" in err and "Peano" in err and "--emulate" in err
    assert not (tmp_path / "o").exists(), "it compiled before saying what is missing"
    assert main(["build", str(tmp_path)]) == 1
    assert "holds no manifest.json" in capsys.readouterr().err


def test_cli_build_for_the_emulator_ignores_an_npu_toolchain_in_the_environment(small_artifact, tmp_path, capsys,
                                                                                monkeypatch):
    from aielower.cli import main

    out = _copy(small_artifact, tmp_path)
    monkeypatch.setenv("PEANO_INSTALL_DIR", str(tmp_path / "peano"))
    monkeypatch.setenv("MLIR_AIE_DIR", str(tmp_path / "mlir-aie"))
    assert main(["build", str(out), "--emulate"]) == 0
    assert "for the emulated device" in capsys.readouterr().out
    assert json.loads((out / "manifest.json").read_text())["builds"]["emulator"]["device"] == "npu2"
