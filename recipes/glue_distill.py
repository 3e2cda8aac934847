"""Distil a teacher into a smaller student on a GLUE task.

    accelerate launch recipes/glue_distill.py \
        --task_name sst2 --teacher_model_name_or_path <fine-tuned teacher> \
        --output_dir students/sst2 --num_train_epochs 3 --per_device_train_batch_size 32

Several processes: `accelerate launch --num_processes 2 --multi_gpu recipes/glue_distill.py ...`; on a machine
without GPUs add `--use_cpu true` (accelerate's own `--cpu` flag starts a single process). Local GLUE files:
`--glue_dir path/to/glue` (the original layout); other files: `--train_file/--validation_file` (csv, tsv, json).
A teacher that is only pre-trained: `--teacher_finetune_epochs 3` fine-tunes it first (saved under
`<output_dir>/_teacher`, reused by later runs). `--push_to_hub --hub_model_id user/name` uploads the student, its
tokenizer and the model card. A BiLSTM or TextCNN student on a teacher-labelled transfer set (Tang et al. 2019):
`--student_type bilstm --augment 20`. Intermediate layers (`--alpha_hint`, `--alpha_attn`, `--alpha_rel`) and
TinyBERT's two stages: README "Layer losses". The student taken further, int8 and pruned, in the same report and
card: `--int8 --prune_heads 0.3 0.5 --prune_recovery_epochs 1` (README "Compression").
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import transformers
from transformers import AutoTokenizer, DataCollatorWithPadding, HfArgumentParser, set_seed

from hf_distill import DistillationTrainer, DistillationTrainingArguments, cache_teacher_outputs
from hf_distill.arguments import distillation_settings
from hf_distill.augment import AugmentationRules, spacy_pos_tagger
from hf_distill.card import hub_base_model, write_report_and_card
from hf_distill.checks import (
    check_augment_flags,
    check_max_seq_length,
    check_push_arguments,
    check_run_flags,
    check_same_tokenization,
    check_student_flags,
    check_student_terms,
    check_teacher_student,
    parse_config_overrides,
    plan_resume,
    warn_if_cpu_launch_is_single_process,
)
from hf_distill.compression import check_compression_flags, compress_student
from hf_distill.glue import (
    evaluate_splits,
    get_task,
    load_glue,
    make_compute_metrics,
    predict_test_splits,
    tokenize_glue,
    tokenize_transfer_set,
)
from hf_distill.layer_terms import layer_plan
from hf_distill.losses import LAYER_TERMS
from hf_distill.processes import end_processes_together
from hf_distill.quantization import BACKENDS, DEFAULT_BACKEND
from hf_distill.recipe_flags import ModelFlags
from hf_distill.results import format_table
from hf_distill.sharding import warn_if_fsdp_is_off
from hf_distill.student import build_student, check_student_layers
from hf_distill.teacher_modes import teacher_plan
from hf_distill.teachers import (
    describe_teachers,
    evaluate_teacher,
    load_additional_teachers,
    load_task_model,
    prepare_teacher,
    run_teachers,
)

logger = logging.getLogger(__name__)


@dataclass
class ModelArguments(ModelFlags):
    student_type: str = field(
        default="transformer",
        metadata={"help": "transformer (teacher layers, make_student), bilstm or textcnn (make_tiny_student)."},
    )
    student_embedding_init: str = field(
        default="teacher", metadata={"help": "bilstm/textcnn: start from the teacher's input embeddings, or random."}
    )
    student_config_overrides: str | None = field(
        default=None,
        metadata={"help": "bilstm/textcnn config fields, e.g. hidden_size=300,pooling=last or kernel_sizes=[2,3,4]."},
    )
    additional_teachers: list[str] | None = field(
        default=None,
        metadata={
            "help": "More teachers (Hub ids or paths): an ensemble with the teacher (--teacher_weights, "
            "--cos_teacher), or with --teacher_route the route's earlier checkpoints, early to final."
        },
    )
    cache_teacher_outputs: bool = field(
        default=False, metadata={"help": "Run the teacher(s) once over the training set and train from the cache."}
    )
    teacher_finetune_epochs: float = field(
        default=0.0, metadata={"help": "Fine-tune a pre-trained teacher on the task for this many epochs first."}
    )
    teacher_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of the teacher fine-tuning; by default --learning_rate."}
    )
    fail_on_chance_teacher: bool = field(
        default=False, metadata={"help": "Stop with an error, instead of a warning, when the teacher is near chance."}
    )
    int8: bool = field(default=False, metadata={"help": "Also report the student (and pruned students) in int8."})
    int8_backend: str | None = field(
        default=None,
        metadata={
            "help": f"int8 backend (hf_distill.quantize), with --int8; default {DEFAULT_BACKEND}.",
            "choices": list(BACKENDS),
        },
    )
    prune_heads: list[float] | None = field(
        default=None, metadata={"help": "Also report the student with these fractions of its heads pruned: 0.3 0.5."}
    )
    prune_recovery_epochs: float = field(
        default=0.0, metadata={"help": "Distil each pruned student from the unpruned one for this many epochs."}
    )


@dataclass
class DataArguments:
    task_name: str = field(metadata={"help": "GLUE task: cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte or wnli."})
    glue_dir: str | None = field(default=None, metadata={"help": "Local GLUE directory (original TSV layout)."})
    train_file: str | None = field(default=None, metadata={"help": "Training file: csv, tsv or json."})
    validation_file: str | None = field(default=None, metadata={"help": "Validation file: csv, tsv or json."})
    test_file: str | None = field(
        default=None, metadata={"help": "Rows to predict with --do_predict (label optional)."}
    )
    max_seq_length: int = field(default=128, metadata={"help": "Truncation length in tokens."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep the first N training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep the first N rows of each dev split."})
    augment: int = field(
        default=0,
        metadata={
            "help": "Transfer set (Tang et al. 2019): variants per training row, labelled by the teacher; 0: off."
        },
    )
    augment_p_mask: float = field(default=0.1, metadata={"help": "Transfer set: probability of masking a word."})
    augment_p_pos: float = field(
        default=0.0,
        metadata={
            "help": "Transfer set: probability of a same-tag word swap (Tang et al.: 0.1; needs hf-distill[pos])."
        },
    )
    augment_p_ng: float = field(default=0.25, metadata={"help": "Transfer set: probability of n-gram sampling."})


def main() -> None:
    parser = HfArgumentParser((ModelArguments, DataArguments, DistillationTrainingArguments))
    if len(sys.argv) == 2 and sys.argv[1].endswith(".json"):
        model_args, data_args, training_args = parser.parse_json_file(sys.argv[1])
        alpha_cos_given = "alpha_cos" in json.loads(Path(sys.argv[1]).read_text())
    else:
        model_args, data_args, training_args = parser.parse_args_into_dataclasses()
        # Parsed again with a marker default, so that every spelling argparse accepts (--alpha-cos, an
        # abbreviation) counts as given.
        parser.set_defaults(alpha_cos=parser)
        alpha_cos_given = parser.parse_known_args()[0].alpha_cos is not parser
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    logger.warning(
        "Process rank: %s of %s, device: %s, distributed: %s",
        training_args.process_index,
        training_args.world_size,
        training_args.device,
        training_args.parallel_mode.value,
    )
    warn_if_cpu_launch_is_single_process(training_args)
    warn_if_fsdp_is_off(training_args)
    set_seed(training_args.seed)

    # Every check that can run before any work does, so a bad flag fails before a teacher is fine-tuned and before
    # anything is written (Trainer creates --output_dir).
    check_push_arguments(training_args)
    tiny_student = model_args.student_type != "transformer"
    overrides = parse_config_overrides(model_args.student_config_overrides)
    check_student_flags(
        model_args.student_type,
        student_path=model_args.student_model_name_or_path,
        layers=model_args.student_layers,
        num_layers=model_args.student_num_layers,
        config_overrides=overrides,
        embedding_init=model_args.student_embedding_init,
        terms=distillation_settings(training_args)[1],
        alpha_cos_given=alpha_cos_given,
    )
    if tiny_student and training_args.alpha_cos > 0:
        logger.info("--student_type %s has no hidden states for L_cos: alpha_cos set to 0", model_args.student_type)
        training_args.alpha_cos = 0.0
    check_run_flags(
        training_args,
        test_file=data_args.test_file,
        teacher_finetune_epochs=model_args.teacher_finetune_epochs,
        teacher_learning_rate=model_args.teacher_learning_rate,
    )
    teacher_plan(
        training_args,
        num_teachers=1 + len(model_args.additional_teachers or []),
        cached=model_args.cache_teacher_outputs,
        terms=distillation_settings(training_args)[1],
    )
    resume = plan_resume(training_args.output_dir, training_args.resume_from_checkpoint)
    task = get_task(data_args.task_name)
    check_augment_flags(
        data_args.augment,
        regression=task.is_regression,
        terms=distillation_settings(training_args)[1],
        teacher_route=training_args.teacher_route,
        cotrain_teacher=training_args.cotrain_teacher,
    )
    rules = None
    if data_args.augment:
        rules = AugmentationRules(
            n_iter=data_args.augment,
            p_mask=data_args.augment_p_mask,
            p_pos=data_args.augment_p_pos,
            p_ng=data_args.augment_p_ng,
            seed=training_args.seed,
        )
    pos_tagger = spacy_pos_tagger() if rules is not None and rules.p_pos > 0 else None
    base_model = hub_base_model(model_args.teacher_model_name_or_path, explicit=model_args.base_model_id)
    finetune = model_args.teacher_finetune_epochs > 0
    teacher = load_task_model(
        model_args.teacher_model_name_or_path, task, require_head=not finetune, cache_dir=model_args.cache_dir
    )
    extra = load_additional_teachers(model_args.additional_teachers, task, teacher, cache_dir=model_args.cache_dir)
    student_kind = dict(
        student_type=model_args.student_type,
        layers=model_args.student_layers,
        num_layers=model_args.student_num_layers,
        embedding_init=model_args.student_embedding_init,
        config_overrides=overrides,
    )
    if tiny_student:  # built once to check the flags against the teacher; built again after its fine-tuning
        terms = distillation_settings(training_args)[1]
        check_student_terms(build_student(teacher, **student_kind), terms=terms, args=training_args)
    elif not model_args.student_model_name_or_path:
        check_student_layers(
            teacher.config, layers=model_args.student_layers, num_layers=model_args.student_num_layers
        )
    raw = load_glue(
        task,
        glue_dir=data_args.glue_dir,
        train_file=data_args.train_file,
        validation_file=data_args.validation_file,
        test_file=data_args.test_file,
        with_test=training_args.do_predict,
        cache_dir=model_args.cache_dir,
    )
    tokenizer = AutoTokenizer.from_pretrained(model_args.teacher_model_name_or_path, cache_dir=model_args.cache_dir)
    if rules is not None and rules.p_mask > 0 and tokenizer.mask_token is None:
        raise ValueError("--augment_p_mask > 0 masks words with the tokenizer's mask token, but it has none; pass 0")
    with training_args.main_process_first(desc="tokenizing"):
        data = tokenize_glue(
            raw,
            task,
            tokenizer,
            max_seq_length=data_args.max_seq_length,
            max_train_samples=data_args.max_train_samples,
            max_eval_samples=data_args.max_eval_samples,
        )
    eval_sets = {split: data[split] for split in task.validation_splits}
    test_sets = {split: data[split] for split in data if split.startswith("test")}
    collator = DataCollatorWithPadding(tokenizer)
    compute_metrics = make_compute_metrics(task)
    student = None
    if model_args.student_model_name_or_path:
        student = load_task_model(
            model_args.student_model_name_or_path, task, what="student", cache_dir=model_args.cache_dir
        )
        student_tokenizer = AutoTokenizer.from_pretrained(model_args.student_model_name_or_path)
        check_same_tokenization(tokenizer, student_tokenizer, raw["train"][task.sentence1_key][:32])
        check_teacher_student(teacher, student, terms=distillation_settings(training_args)[1])
    check_max_seq_length(data_args.max_seq_length, tokenizer, teacher, *([student] if student is not None else []))
    terms = distillation_settings(training_args)[1]
    if terms.keys() & set(LAYER_TERMS):  # layer_map, heads and sizes against both models, before the fine-tuning
        layer_plan(training_args, student or build_student(teacher, **student_kind), teacher, terms)
    check_compression_flags(
        int8=model_args.int8,
        int8_backend=model_args.int8_backend or DEFAULT_BACKEND,
        int8_backend_given=model_args.int8_backend is not None,
        prune_fractions=model_args.prune_heads,
        recovery_epochs=model_args.prune_recovery_epochs,
        model_type=None if tiny_student else (student or teacher).config.model_type,
        num_heads=None if tiny_student else (student or teacher).config.num_attention_heads,
        world_size=training_args.world_size,
    )
    teacher_dir = Path(training_args.output_dir) / "_teacher"
    teacher, teacher_metrics, teacher_stage = prepare_teacher(
        teacher,
        task=task,
        base=model_args.teacher_model_name_or_path,
        args=training_args,
        eval_sets=eval_sets,
        train_dataset=data["train"],
        finetune_epochs=model_args.teacher_finetune_epochs,
        learning_rate=model_args.teacher_learning_rate,
        output_dir=teacher_dir,
        fail_on_chance=model_args.fail_on_chance_teacher,
        data_collator=collator,
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
    )
    if student is None:
        student = build_student(teacher, **student_kind)

    # The teacher modes (README "Teacher modes"): an ensemble or a route of checkpoints, and cached outputs.
    teachers = run_teachers(teacher, extra, route=training_args.teacher_route)
    train_dataset = data["train"]
    transfer_set = None
    if rules is not None:  # the training rows and their variants (label -100), labelled by the teacher below
        train_dataset, transfer_set = tokenize_transfer_set(
            raw["train"].select(range(len(train_dataset))),
            task,
            tokenizer,
            rules,
            max_seq_length=data_args.max_seq_length,
            pos_tagger=pos_tagger,
        )
    if model_args.cache_teacher_outputs or rules is not None:
        with training_args.main_process_first(desc="caching teacher outputs"):
            train_dataset = cache_teacher_outputs(
                teachers,
                train_dataset,
                data_collator=collator,
                batch_size=training_args.per_device_eval_batch_size,
                hidden_states="cos" in distillation_settings(training_args)[1],
            )
    trainer = DistillationTrainer(
        model=student,
        teacher_model=None
        if model_args.cache_teacher_outputs or rules is not None
        else teachers
        if len(teachers) > 1
        else teacher,
        args=training_args,
        train_dataset=train_dataset,
        # During training the first split alone (MNLI: matched), as in `run_glue.py`: `eval_strategy` logs
        # `eval_<metric>` and `load_best_model_at_end` finds `eval_loss`. Every split is evaluated at the end.
        eval_dataset=eval_sets[task.validation_splits[0]],
        data_collator=collator,
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
    )
    train_result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model()
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_state()  # trainer_state.json: the log history, with every loss term
    student_metrics = evaluate_splits(trainer, eval_sets)
    teacher_name = str(teacher_dir) if finetune else model_args.teacher_model_name_or_path
    if training_args.cotrain_teacher:  # the teacher trained along: saved, and reported as it is now
        teacher = trainer.teacher_model
        teacher_name = str(Path(training_args.output_dir) / "_cotrained_teacher")  # "_*" is never pushed
        if trainer.is_world_process_zero():
            teacher.save_pretrained(teacher_name)
            tokenizer.save_pretrained(teacher_name)
        teacher_metrics = evaluate_teacher(
            teacher, args=training_args, eval_sets=eval_sets, data_collator=collator, compute_metrics=compute_metrics
        )
    names = run_teachers(teacher_name, model_args.additional_teachers or [], route=training_args.teacher_route)
    teacher_name = describe_teachers(names, route=training_args.teacher_route)
    trainer.log_metrics("eval", student_metrics)
    trainer.save_metrics("eval", student_metrics)

    if trainer.is_world_process_zero():
        compressed = compress_student(
            trainer.model,
            output_dir=training_args.output_dir,
            args=training_args,
            train_dataset=data["train"],
            eval_sets=eval_sets,
            data_collator=collator,
            compute_metrics=compute_metrics,
            int8_backend=(model_args.int8_backend or DEFAULT_BACKEND) if model_args.int8 else None,
            prune_fractions=model_args.prune_heads or (),
            recovery_epochs=model_args.prune_recovery_epochs,
            tokenizer=tokenizer,
        )
        report = write_report_and_card(
            teacher,
            trainer.model,
            output_dir=training_args.output_dir,
            task=task.name,
            teacher_metrics=teacher_metrics,
            student_metrics=student_metrics,
            args=training_args,
            seq_len=data_args.max_seq_length,
            latency_repeats=model_args.latency_repeats,
            training_time_s=train_result.metrics.get("train_runtime"),
            teacher_name=teacher_name,
            teacher_finetuning=teacher_stage,
            base_model=base_model,
            hub_model_id=training_args.hub_model_id,
            train_rows=len(train_dataset),
            eval_rows=len(eval_sets[task.validation_splits[0]]),
            eval_rows_available=len(raw[task.validation_splits[0]]),
            validation_file=data_args.validation_file,
            transfer_set=transfer_set,
            compressed=compressed,
            student_start=model_args.student_model_name_or_path,
        )
        print(format_table(report))
    if training_args.do_predict:
        predict_test_splits(trainer, test_sets, task, training_args.output_dir)
    if training_args.push_to_hub:
        trainer.push_to_hub(commit_message=f"hf-distill student for GLUE {task.name}")


if __name__ == "__main__":
    # All ranks leave together, after rank 0's report, card and push; then the process group is destroyed.
    with end_processes_together():
        main()
