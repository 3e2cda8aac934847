"""Regenerate the README's generated parts: the benchmark section and the "verified with" lines.

    .venv/bin/python -m benchmarks.render

Every figure is read from a file; nothing is typed in by hand. The benchmark section, between the markers
`<!-- benchmarks:start -->` and `<!-- benchmarks:end -->`, comes from the JSON files in benchmarks/results/. The
versions, between `<!-- versions:start -->` and `<!-- versions:end -->`, come from `constraints.txt` (and the torch
pin of the Makefile), and the newest-versions run from `benchmarks/results/compatibility.json` (`make test-latest`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from hf_distill.arguments import LOSS_WEIGHT_NAMES

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"
VERSIONS_START, VERSIONS_END = "<!-- versions:start -->", "<!-- versions:end -->"
CONSTRAINTS = ROOT / "constraints.txt"
MAKEFILE = ROOT / "Makefile"
# The packages named in the "verified with" line, in this order.
CORE_PACKAGES: tuple[str, ...] = ("torch", "transformers", "accelerate", "datasets", "evaluate", "tokenizers")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_constraints(path: Path = CONSTRAINTS, makefile: Path = MAKEFILE) -> dict[str, str]:
    """Exact versions by canonical package name from a constraints file (`name==version` lines), with torch from
    the Makefile's `TORCH_PIN` (torch is not in the file: the pin chooses its build)."""
    versions: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)", line.strip())
            if match:
                versions[_canonical(match.group(1))] = match.group(2)
    if makefile.is_file():
        match = re.search(r"^TORCH_PIN \?= torch==(\S+)", makefile.read_text(encoding="utf-8"), flags=re.M)
        if match:
            versions["torch"] = match.group(1)
    return versions


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _provenance(result: dict[str, Any]) -> str:
    machine = result.get("machine", {})
    versions = result.get("versions", {})
    return (
        f"_`{result['command']}` on {result['date']}, commit `{(result.get('git_commit') or '?')[:8]}`, "
        f"{machine.get('cpu_count', '?')} CPUs ({machine.get('processor') or machine.get('platform', '?')}), "
        f"torch {versions.get('torch', '?')}, transformers {versions.get('transformers', '?')}._"
    )


def _quality(result: dict[str, Any]) -> list[str]:
    summary, rows, config = result["summary"], result["results"]["variants"], result["config"]
    teacher = summary["teacher_accuracy"]
    lines = [f"### Quality on real SST-2 (dev, {config.get('dev_rows', 872)} rows)", ""]
    record = result["results"].get("teacher")
    if record:  # the teacher chosen on dev (`teacher_with_dev_selection`)
        best = record["best"]
        lines.append(
            f"Teacher: all-MiniLM-L6-v2 fine-tuned on {record['train_rows']:,} SST-2 train rows for "
            f"{record['epochs']:g} epochs (learning rate {record['learning_rate']:g}, batch {record['batch_size']}, "
            f"warm-up {record['warmup']:.0%}, batches grouped by length), evaluated on dev every half epoch; the best "
            f"evaluation (epoch {best['epoch']:.1f}, accuracy {teacher:.4f}) is the teacher. Every student trains "
            f"{config['epochs']:g} epoch(s) on the same rows (learning rate {config['learning_rate']:g}); the "
            "distilled ones read the teacher's outputs from a cache. One run per seed."
        )
    else:
        lines.append(
            f"Teacher: all-MiniLM-L6-v2 fine-tuned {config.get('teacher_epochs', '?'):g} epoch on "
            f"{config.get('train_rows', '?')} shuffled SST-2 train rows (accuracy {teacher:.4f}); every student "
            f"trains {config.get('epochs', '?'):g} epoch on the same rows (batch {config.get('batch_size', '?')}, "
            f"learning rate {config.get('learning_rate', '?'):g}), one run per seed."
        )
    lines += [
        "",
        "| variant | accuracy (median) | min – max | seeds | vs teacher |",
        "|---|---|---|---|---|",
    ]
    for row in rows.values():
        lines.append(
            f"| {row['description']} | {row['median']:.4f} | {row['min']:.4f} – {row['max']:.4f} | "
            f"{len(row['accuracies'])} | {row['median'] / teacher:.2%} |"
        )
    gains = summary.get("kd_gain_points_per_seed")
    per_seed = (
        f" (per seed, same initialisation and data order: {', '.join(f'{gain:+.2f}' for gain in gains)})"
        if gains
        else ""
    )
    lines += [
        "",
        f"Retention (b ÷ teacher): **{summary['retention']:.2%}** (target ≥ 98.5%); KD gain (b − c): "
        f"**{summary['kd_gain_points']:+.2f} points**{per_seed} (target ≥ +1.0); random-init student (d): "
        f"{summary['random_init_accuracy']:.4f}.",
        *_soft_targets(result["results"].get("soft_targets")),
        "",
        _provenance(result),
        "",
        *_investigations(),
    ]
    return lines


def _soft_targets(stats: dict[str, float] | None) -> list[str]:
    if not stats:
        return []
    return [
        "",
        f"The teacher on its own training rows: accuracy {stats['train_accuracy']:.2%}, mean top probability "
        f"{stats['mean_top_probability_t1']:.3f} at T=1 and {stats['mean_top_probability']:.3f} at "
        f"T={stats['temperature']:g} (the closer to 1, the less its soft targets add to the labels).",
    ]


def _investigations() -> list[str]:
    """Rows for the follow-up runs (`quality_sst2_<name>.json`): what was changed and what it gave."""
    paths = sorted(p for p in RESULTS_DIR.glob("quality_sst2_*.json") if not p.name.endswith(".partial.json"))
    if not paths:
        return []
    lines = [
        "#### What was tried after the main run",
        "",
        "| run | changed settings | seeds | teacher | (b) distilled | (c) labels only | (b) − (c) | retention |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for path in paths:
        result = json.loads(path.read_text())
        config, summary, variants = result["config"], result["summary"], result["results"]["variants"]
        changed = {key: config[key] for key in ("temperature", *LOSS_WEIGHT_NAMES) if config.get(key) is not None}
        settings = ("teacher_epochs", "epochs", "learning_rate", "train_samples")
        changed |= {key: config[key] for key in settings if config.get(key) is not None}
        b, c = variants.get("b"), variants.get("c")
        lines.append(
            f"| {result['benchmark'].removeprefix('quality_sst2_')} | "
            + ", ".join(f"{k}={v:g}" for k, v in changed.items())
            + f" | {len(config['seeds'])} | {summary['teacher_accuracy']:.4f} | "
            + (f"{b['median']:.4f}" if b else "–")
            + " | "
            + (f"{c['median']:.4f}" if c else "–")
            + " | "
            + (f"{100 * (b['median'] - c['median']):+.2f}" if b and c else "–")
            + " | "
            + (f"{summary['retention']:.2%}" if "retention" in summary else "–")
            + " |"
        )
    return lines + [""]


def _glue(result: dict[str, Any]) -> list[str]:
    summary, tasks = result["summary"], result["results"]["tasks"]
    lines = [
        "### GLUE dev, DistilBERT-style (the recipe on every task with local train data)",
        "",
        "Teacher: all-MiniLM-L6-v2 fine-tuned on each task's full train set by the recipe "
        "(`--teacher_finetune_epochs`); SST-2's is the dev-selected teacher of the quality benchmark above. Student: "
        "`make_student`'s default (every other layer), distilled from cached teacher outputs with the default loss. "
        "Batch 32, batches grouped by length, seed 42; one run per task. Chance is what a trivial predictor scores "
        "on the dev set in the task's metric: the majority class for accuracy, always answering the positive class "
        "for F1, 0 for correlations. A teacher within 5 points of it is "
        "not counted in the macro score, and is tried again with the task's other settings where it has any "
        "(listed below the table).",
        "",
        "| task | metric | teacher | student | retention | teacher epochs, lr | student epochs, lr | warm-up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    retried = []
    for task, row in tasks.items():
        settings = row["settings"]
        note, retention = "", "–" if row["retention"] is None else f"{row['retention']:.2%}"
        if row["teacher_near_chance"]:  # a retention of a teacher at chance means nothing
            where = "below" if row["teacher"] < row["chance"] else "near"
            note, retention = f" ({where} chance {row['chance']:.3f}: not counted)", "–"
        lines.append(
            f"| {task} | {row['metric']} | {row['teacher']:.4f}{note} | {row['student']:.4f} | {retention} | "
            f"{_teacher_settings(settings)} | {settings['epochs']:g}, {settings['learning_rate']:g} | "
            f"{settings.get('warmup', 0.06):.0%} |"
        )
        if len(row.get("tried", [])) > 1:
            steps = "; ".join(
                f"teacher {_teacher_settings(attempt['settings'])}, warm-up {attempt['settings']['warmup']:.0%} → "
                f"teacher {attempt['teacher']:.4f}, student {attempt['student']:.4f}"
                for attempt in row["tried"]
            )
            retried.append(f"- {task}, in order: {steps}.")
    if retried:
        lines += ["", "Settings tried (epochs, learning rate) while a teacher stayed near chance:", "", *retried]
    lines += [
        "",
        f"Macro score over {', '.join(summary['tasks_counted'])}: teacher {summary['teacher_macro']:.4f}, student "
        f"{summary['student_macro']:.4f}, **retention {summary['glue_macro_retention']:.2%}** (student macro ÷ "
        "teacher macro, as in Table 1 of the DistilBERT paper).",
        "",
        _provenance(result),
    ]
    return lines


def _teacher_settings(settings: dict[str, Any]) -> str:
    if settings["teacher_epochs"] is None:
        return "quality benchmark's"
    return f"{settings['teacher_epochs']:g}, {settings['teacher_learning_rate']:g}"


def _train_speed(result: dict[str, Any]) -> list[str]:
    lines = [
        "### Training cost (MiniLM teacher, 3-layer student, batch 32)",
        "",
        "| seq len | (i) student step | (ii) teacher forward | (iii) distillation step | (iii) ÷ ((i)+(ii)) "
        "| peak RSS (i) / (iii) |",
        "|---|---|---|---|---|---|",
    ]
    for seq_len, row in result["results"].items():
        m = row["median_s"]
        mem = row["memory"]
        lines.append(
            f"| {seq_len} | {m['plain_step'] * 1e3:.0f} ms | {m['teacher_forward'] * 1e3:.0f} ms | "
            f"{m['distill_step'] * 1e3:.0f} ms | **{row['overhead_ratio']:.3f}** | "
            f"{mem['plain_step']['peak_rss_mib']:.0f} / {mem['distill_step']['peak_rss_mib']:.0f} MiB |"
        )
    if all("cached_overhead_ratio" in row for row in result["results"].values()):
        lines += [
            "",
            "| seq len | (iv) step from cached outputs | (iv) ÷ (i) |",
            "|---|---|---|",
        ]
        for seq_len, row in result["results"].items():
            cached_ms = row["median_s"]["cached_step"] * 1e3
            lines.append(f"| {seq_len} | {cached_ms:.0f} ms | **{row['cached_overhead_ratio']:.3f}** |")
    lines += [
        "",
        "Targets: (iii) ÷ ((i)+(ii)) ≤ 1.05; (iv) ÷ (i) ≤ 1.02. Medians of interleaved rounds.",
        "",
        _provenance(result),
    ]
    return lines


def _teacher_modes(result: dict[str, Any]) -> list[str]:
    summary = result["summary"]
    teachers = summary["teacher_accuracy"]
    lines = [
        f"### Teacher modes on real SST-2 (dev, {result['config']['dev_rows']} rows)",
        "",
        f"Teachers: MiniLM fine-tuned with seed 0 (A, {teachers['A']:.4f}) and seed 1 (B, {teachers['B']:.4f}) on "
        f"{result['config']['train_samples']} train rows; students keep layers 0, 2, 4, one epoch.",
        "",
        "| mode | student accuracy | training time |",
        "|---|---|---|",
    ]
    for mode, row in result["results"].items():
        if mode == "wall":
            continue
        extra = (
            f" (teacher after co-training: {row['cotrained_teacher_accuracy']:.4f})"
            if "cotrained_teacher_accuracy" in row
            else ""
        )
        lines.append(f"| {row['label']} | {row['accuracy']:.4f}{extra} | {row['train_seconds']:.0f} s |")
    lines += [
        "",
        f"3 epochs on {result['config']['wall_rows']} rows: online {summary['online_3_epoch_s']:.0f} s, cached "
        f"{summary['cached_3_epoch_s_including_caching']:.0f} s including {summary['caching_s']:.0f} s of caching "
        f"({summary['cached_speedup_end_to_end']:.2f}× faster end to end). The per-mode training times are single "
        "sequential runs, not interleaved: read them as rough (other jobs shared the CPUs during some of them); the "
        "3-epoch comparison ran on its own.",
        "",
        _provenance(result),
    ]
    return lines


def _tiny_students(result: dict[str, Any]) -> list[str]:
    config, summary, table = result["config"], result["summary"], result["results"]["table"]
    latency = result["results"]["latency"]
    parameters = summary["parameters"]
    rules = config["augmentation"]
    batches = latency["batch_sizes"]
    lines = [
        f"### Tiny students on real SST-2 (dev, {config['dev_rows']} rows)",
        "",
        f"Teacher: all-MiniLM-L6-v2 fine-tuned 1 epoch on {config['train_samples']} shuffled SST-2 train rows "
        f"(accuracy {summary['teacher_accuracy']:.4f}). Students: `make_tiny_student` (the teacher's vocabulary; its "
        f"input embeddings projected to {config['embedding_dim']} dimensions), {config['epochs']:g} epochs on the "
        f"labelled rows or {config['augmented_epochs']:g} on "
        f"the transfer set ({config['rows']} rows: the {config['labelled_rows']} labelled ones and their variants; "
        f"n_iter {rules['n_iter']}, p_mask {rules['p_mask']}, p_pos {rules['p_pos']}, p_ng {rules['p_ng']}), "
        f"learning rate {config['learning_rate']:g}, evaluated at the end of training; median (min – max) over "
        f"seeds {', '.join(map(str, config['seeds']))}.",
        "",
        "| student | labels only | distilled | distilled + augmented | params | "
        + " / ".join(f"speedup at batch {b}" for b in batches)
        + " |",
        "|---|---|---|---|---|---|",
    ]
    for name, variants in table.items():
        cells = [f"{v['median']:.4f} ({v['min']:.4f} – {v['max']:.4f})" for v in variants.values()]
        speed = " / ".join(f"{latency['results'][name][str(b)]['speedup']:.1f}×" for b in batches)
        lines.append(f"| {name} | {' | '.join(cells)} | {parameters[name]:,} | {speed} |")
    lines.append(f"| teacher | {summary['teacher_accuracy']:.4f} | | | {parameters['teacher']:,} | 1.0× |")
    gains = ", ".join(
        f"{name} **{summary[f'{name}_kd_gain_points']:+.2f} points**"
        for name in table
        if f"{name}_kd_gain_points" in summary
    )
    lines += [
        "",
        f"KD gain (distilled + augmented − labels only, medians): {gains} (target ≥ +2 for the BiLSTM). BiLSTM "
        f"speedup at batch 32: **{summary['bilstm_speedup_b32']:.1f}×** (target ≥ 20×). Latency: seq len "
        f"{latency['seq_len']}, {latency['repeats']} interleaved rounds, teacher and students in one run, "
        f"{latency['num_threads']} torch thread(s).",
        "",
        *_tiny_student_variations(result),
        _provenance(result),
    ]
    return lines


def _tiny_student_variations(main: dict[str, Any]) -> list[str]:
    """Rows for the follow-up runs (`tiny_students_<name>.json`): the settings that differ from the main run's, and
    the medians they gave."""
    paths = sorted(p for p in RESULTS_DIR.glob("tiny_students_*.json") if not p.name.endswith(".partial.json"))
    if not paths:
        return []
    lines = [
        "#### What was tried after the main run",
        "",
        "| run | changed settings | seeds | student | labels only | distilled | distilled + augmented | gain |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ignored = {"name", "variants", "reuse_runs_from", "reused_from", "cache_dir"}
    for path in paths:
        result = json.loads(path.read_text())
        config = result["config"]
        changed = {k: v for k, v in config.items() if k not in ignored and main["config"].get(k) != v}
        settings = ", ".join(f"{k}={v}" for k, v in changed.items()) or "none"
        for name, variants in result["results"]["table"].items():
            cells = " | ".join(f"{v['median']:.4f}" for v in variants.values())
            gain = result["summary"].get(f"{name}_kd_gain_points")
            lines.append(
                f"| {result['benchmark'].removeprefix('tiny_students_')} | {settings} | {len(config['seeds'])} | "
                f"{name} | {cells} | {gain:+.2f} |"
            )
    reused = sorted({json.loads(p.read_text())["config"].get("reused_from") for p in paths} - {None})
    if reused:
        lines += [
            "",
            f"Runs that change only the transfer-set training take their labels-only and distilled runs (and latency) "
            f"from {', '.join(f'`{name}`' for name in reused)}, whose settings for those runs are equal (checked).",
        ]
    return lines + [""]


def _layer_losses(result: dict[str, Any]) -> list[str]:
    config, summary, variants = result["config"], result["summary"], result["results"]["variants"]
    teacher = result["results"]["teacher"]
    narrow = config["narrow"]
    lines = [
        f"### Layer losses on real SST-2 (dev, {config['dev_rows']} rows)",
        "",
        f"Teacher: all-MiniLM-L6-v2 fine-tuned on all {teacher['train_rows']:,} SST-2 train rows, chosen on dev "
        f"(accuracy {summary['teacher_accuracy']:.4f}), run live. Students: {config['epochs']:g} epoch(s) on "
        f"{config['train_rows']:,} shuffled train rows, learning rate {config['learning_rate']:g}, batch "
        f"{config['batch_size']}; median (min – max) over seeds {', '.join(map(str, config['seeds']))}. The narrow "
        f"student has hidden size {narrow['hidden_size']} ({narrow['num_attention_heads']} heads, intermediate "
        f"{narrow['intermediate_size']}), each tensor initialised from the leading slice of the teacher's.",
        "",
        "| student | loss settings beyond the defaults | dev accuracy | vs its baseline |",
        "|---|---|---|---|",
    ]
    for key, variant in variants.items():
        settings = ", ".join(f"`{name}={value:g}`" for name, value in variant["settings"].items()) or "—"
        gain = summary.get(f"{key}_gain_points")
        lines.append(
            f"| {key}: {variant['description']} | {settings} | {variant['median']:.4f} "
            f"({variant['min']:.4f} – {variant['max']:.4f}) | {'' if gain is None else f'{gain:+.2f} points'} |"
        )
    lines += [
        "",
        "Baselines: `triple` for the layer terms on the 3-layer student, `narrow` for `narrow_hint`. Each layer "
        "term's weight makes it start at about the weighted size of `L_cos`.",
        "",
        _provenance(result),
    ]
    return lines


def _inference(result: dict[str, Any]) -> list[str]:
    latency, models = result["results"]["latency"], result["results"]["models"]
    lines = [
        f"### Inference on CPU (seq len {latency['seq_len']}, {latency['repeats']} interleaved rounds)",
        "",
        "| model | parameters | size on disk | "
        + " | ".join(f"batch {b}: latency, speedup" for b in latency["batch_sizes"])
        + " |",
        "|---|---|---|" + "---|" * len(latency["batch_sizes"]),
    ]
    for name in ("teacher", "student"):
        cells = []
        for b in latency["batch_sizes"]:
            row = latency["results"][name][str(b)]
            cells.append(f"{row['median_s'] * 1e3:.1f} ms, {row['speedup']:.2f}×")
        lines.append(
            f"| {name} | {models[name]['parameters']:,} | {models[name]['size_on_disk_bytes'] / 2**20:.1f} MiB | "
            + " | ".join(cells)
            + " |"
        )
    lines += ["", "Target: student ≥ 1.8× faster at batch 32 (the FLOP limit is 2.0×).", "", _provenance(result)]
    return lines


def _compression(result: dict[str, Any]) -> list[str]:
    config, summary, rows = result["config"], result["summary"], result["results"]["rows"]
    latency = result["results"]["latency"]
    student = config["student"]
    lines = [
        f"### Compression beyond depth on real SST-2 (dev, {config['dev_rows']} rows)",
        "",
        f"Teacher: all-MiniLM-L6-v2 fine-tuned on all of SST-2, chosen on dev. Student: teacher layers "
        f"{', '.join(map(str, student['layers']))}, distilled for {student['epochs']:g} epoch on "
        f"{student['train_rows']:,} train rows. Pruned students lose the heads of least importance over the whole "
        f"model (Michel et al., 2019), measured on 2,048 train rows; recovery distils them from the unpruned student "
        f"for {config['recovery_epochs']:g} epoch on {config['recovery_rows']:,} rows. Latency: all rows interleaved "
        f"in one run, sequence length {latency['seq_len']}, {latency['repeats']} rounds, {latency['num_threads']} "
        "threads; speedups against the fp32 teacher.",
        "",
        "| model | parameters | size on disk | dev accuracy | batch 1: speedup | batch 32: latency, speedup |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['parameters']:,} | {row['size_bytes'] / 2**20:.1f} MiB | {row['accuracy']:.4f} | "
            f"{row['speedup']['1']:.2f}× | {row['latency_ms']['32']:.0f} ms, {row['speedup']['32']:.2f}× |"
        )
    lines += [
        "",
        f"Target: a distilled int8 student ≥ {summary['target_speedup_b32']:g}× faster than the fp32 teacher at "
        f"batch 32 and within {summary['target_accuracy_drop_points']:g} point of the fp32 student. Default backend "
        f"({summary['int8_backend']}): {summary['int8_student_speedup_b32']:.2f}×, accuracy "
        f"{-summary['int8_accuracy_drop_points']:+.2f} points against the fp32 student; fastest int8 student "
        f"({summary['fastest_int8_student']}): {summary['fastest_int8_student_speedup_b32']:.2f}×, "
        f"{-summary['fastest_int8_student_drop_points']:+.2f} points. Measured on {result['machine']['processor']}.",
        "",
        _provenance(result),
    ]
    return lines


def _mlm_memory(result: dict[str, Any]) -> list[str]:
    config, summary = result["config"], result["summary"]
    medians = result["results"]["median_step_peak_mb"]
    plain = summary["plain_mlm_step_peak_mb"]
    lines = [
        f"### Masked-LM distillation: peak memory of a training step (batch {config['batch_size']} x "
        f"{config['seq_len']} tokens)",
        "",
        "all-MiniLM-L6-v2 as a masked-LM teacher (vocabulary 30,522), its 3-layer student, SST-2 sentences in blocks. "
        f"Peak resident memory of {config['steps']} optimizer steps above the memory before them, each configuration "
        f"in a fresh process, median of {config['repeats']} alternated rounds. One fp32 logits tensor of this batch "
        f"is {summary['one_logits_tensor_mb']} MB.",
        "",
        "| step | peak above start | vs plain masked LM |",
        "|---|---|---|",
    ]
    for name, value in medians.items():
        lines.append(f"| {name} | {value:.0f} MB | {value / plain:.2f}× |")
    lines += ["", _provenance(result)]
    return lines


def _fsdp_memory(result: dict[str, Any]) -> list[str]:
    config, summary = result["config"], result["summary"]
    medians = result["results"]["median_teacher_peak_mb"]
    lines = [
        f"### A teacher sharded across {summary['processes']} processes: memory per process",
        "",
        f"A BERT-large-sized teacher ({config['layers']} layers, hidden {config['hidden']}, "
        f"{summary['teacher_parameters']:,} parameters, {summary['teacher_fp32_mb']:,} MB in fp32), "
        f"{summary['processes']} CPU processes over gloo. Peak resident memory of the teacher in the larger process: "
        f"its weights, the layers gathered for the forward and the activations of {config['forwards']} forward "
        f"passes on {config['batch'][0]} x {config['batch'][1]} tokens; median of {config['repeats']} alternated "
        "rounds.",
        "",
        "| teacher | peak per process | vs replicated |",
        "|---|---|---|",
    ]
    for mode, value in medians.items():
        lines.append(f"| {mode} | {value:,.0f} MB | {value / medians['replicated']:.2f}× |")
    lines += ["", _provenance(result)]
    return lines


def render() -> str:
    sections = []
    builders = (
        ("quality_sst2", _quality),
        ("glue", _glue),
        ("train_speed", _train_speed),
        ("teacher_modes", _teacher_modes),
        ("tiny_students", _tiny_students),
        ("layer_losses", _layer_losses),
        ("compression", _compression),
        ("mlm_memory", _mlm_memory),
        ("fsdp_memory", _fsdp_memory),
        ("inference_speed", _inference),
    )
    for name, build in builders:
        result = _load(name)
        if result is not None:
            sections += build(result) + [""]
    if not sections:
        sections = ["No benchmark results yet: run the scripts in benchmarks/.", ""]
    return "\n".join([START, "", *sections, END])


def render_versions() -> str:
    """The "verified with" line from `constraints.txt`, and the result of the last `make test-latest`."""
    pinned = read_constraints()
    listed = ", ".join(f"{name} {pinned[name]}" for name in CORE_PACKAGES if name in pinned)
    lines = [
        VERSIONS_START,
        f"Verified with {listed} (`make test` installs exactly these, from `constraints.txt`).",
    ]
    latest = _load("compatibility")
    if latest is not None:
        summary, installed = latest["summary"], latest["results"]["installed"]
        versions = ", ".join(f"{name} {installed[name]}" for name in CORE_PACKAGES if installed.get(name))
        outcome = (
            "the suite passed" if summary["passed_all"] else f"the suite failed (exit code {summary['exit_code']})"
        )
        lines.append(
            f"Newest allowed versions (`make test-latest`, {latest['date'][:10]}): {versions}; {outcome} "
            f"({summary['passed']} passed, {summary['failed']} failed, {summary['errors']} errors, "
            f"{summary['skipped']} skipped)."
        )
    return "\n".join([*lines, VERSIONS_END])


def _replace_between(text: str, start: str, end: str, block: str, readme: Path) -> str:
    if start not in text or end not in text:
        raise ValueError(f"{readme} lacks the markers {start} and {end}")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return head + block + tail


def update_readme(readme: Path = README) -> None:
    text = readme.read_text(encoding="utf-8")
    text = _replace_between(text, START, END, render(), readme)
    text = _replace_between(text, VERSIONS_START, VERSIONS_END, render_versions(), readme)
    readme.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    update_readme()
