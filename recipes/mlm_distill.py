"""Distil a masked-LM teacher into a smaller general-purpose student on raw text: DistilBERT's task-agnostic phase.

    accelerate launch recipes/mlm_distill.py \
        --teacher_model_name_or_path bert-base-uncased --train_file corpus.txt \
        --output_dir students/bert-l6 --num_train_epochs 3 --per_device_train_batch_size 32

The student is `make_student(teacher)` (every other layer, or `--student_layers`), trained with the DistilBERT triple
loss over the masked-LM logits at DistilBERT's defaults (`--alpha_kd 5 --alpha_task 2 --alpha_cos 1 --temperature
2`): `L_kd` on the masked positions (`--kd_positions all`: every non-padding token), `L_task` the student's own
masked-LM loss, `L_cos` on the last hidden states. Masking is dynamic (15%, 80/10/10) and reproducible
(`hf_distill.MaskedLMCollator`). Text: `--train_file` (one document per line, or json/csv with a text column), a Hub
dataset (`--dataset_name wikitext --dataset_config_name wikitext-103-raw-v1`), or `--glue_dir` (the GLUE sentences as
unlabelled text). The held-out split scores the teacher and the student (masked-LM loss and perplexity, on the same
masked tokens) in `results.json` and the model card.

The general student is then fine-tuned per task: `recipes/glue_distill.py --student_model_name_or_path <output_dir>`
with a task teacher (README "Task-agnostic distillation").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import transformers
from transformers import AutoConfig, AutoTokenizer, HfArgumentParser, set_seed

from hf_distill import DistillationTrainer, DistillationTrainingArguments
from hf_distill.arguments import distillation_settings
from hf_distill.card import hub_base_model, write_report_and_card
from hf_distill.checks import (
    check_max_seq_length,
    check_push_arguments,
    check_same_tokenization,
    check_student_flags,
    check_teacher_student,
    plan_resume,
    warn_if_cpu_launch_is_single_process,
)
from hf_distill.glue import HUB_DATASET
from hf_distill.masking import MaskedLMCollator, check_masking_workers, mask_once
from hf_distill.modeling import check_model_reference
from hf_distill.perplexity import masked_lm_metrics
from hf_distill.processes import end_processes_together
from hf_distill.recipe_flags import ModelFlags
from hf_distill.results import format_table
from hf_distill.sharding import warn_if_fsdp_is_off
from hf_distill.student import check_student_layers, freeze_position_embeddings, make_student
from hf_distill.teachers import load_masked_lm
from hf_distill.text_corpus import check_corpus_flags, describe_corpus, load_text_corpus, tokenize_corpus

logger = logging.getLogger(__name__)


@dataclass
class ModelArguments(ModelFlags):
    freeze_position_embeddings: bool = field(
        default=False, metadata={"help": "Keep the student's position embeddings at the teacher's (DistilBERT)."}
    )


@dataclass
class DataArguments:
    train_file: str | None = field(
        default=None, metadata={"help": "Text: .txt (one document per line), or .json/.jsonl/.csv/.tsv."}
    )
    validation_file: str | None = field(default=None, metadata={"help": "Held-out text, as --train_file."})
    dataset_name: str | None = field(default=None, metadata={"help": "A Hub dataset of text."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Its configuration."})
    glue_dir: str | None = field(
        default=None, metadata={"help": "Local GLUE folder: its sentences as unlabelled text (dev files held out)."}
    )
    glue_tasks: list[str] | None = field(default=None, metadata={"help": "With --glue_dir: tasks to read (all)."})
    text_column: str | None = field(default=None, metadata={"help": "The text column of json/csv/Hub data."})
    validation_split_percentage: float = field(
        default=5.0, metadata={"help": "Percent of the documents held out when the source has no held-out split."}
    )
    max_seq_length: int = field(default=128, metadata={"help": "Block length in tokens (line_by_line: truncation)."})
    line_by_line: bool = field(
        default=False, metadata={"help": "One example per document (padded) instead of blocks of max_seq_length."}
    )
    mlm_probability: float = field(default=0.15, metadata={"help": "Share of tokens masked (80/10/10)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep the first N training examples."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep the first N held-out examples."})


def main() -> None:
    parser = HfArgumentParser((ModelArguments, DataArguments, DistillationTrainingArguments))
    model_args, data_args, training_args = parser.parse_args_into_dataclasses()
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

    # Every check that can run before any work does: nothing is loaded, trained or written before they pass.
    check_push_arguments(training_args)
    check_masking_workers(training_args)
    corpus_flags = dict(
        train_file=data_args.train_file,
        validation_file=data_args.validation_file,
        dataset_name=data_args.dataset_name,
        dataset_config_name=data_args.dataset_config_name,
        glue_dir=data_args.glue_dir,
        glue_tasks=data_args.glue_tasks,
    )
    check_corpus_flags(**corpus_flags, validation_split_percentage=data_args.validation_split_percentage)
    resume = plan_resume(training_args.output_dir, training_args.resume_from_checkpoint)
    check_model_reference(model_args.teacher_model_name_or_path, what="teacher")
    teacher_config = AutoConfig.from_pretrained(model_args.teacher_model_name_or_path, cache_dir=model_args.cache_dir)
    student_flags = dict(layers=model_args.student_layers, num_layers=model_args.student_num_layers)
    check_student_flags(
        "transformer",
        student_path=model_args.student_model_name_or_path,
        **student_flags,
        config_overrides={},
        embedding_init="teacher",
        terms=distillation_settings(training_args)[1],
        alpha_cos_given=False,
    )
    if not model_args.student_model_name_or_path:
        check_student_layers(teacher_config, **student_flags)
    tokenizer = AutoTokenizer.from_pretrained(model_args.teacher_model_name_or_path, cache_dir=model_args.cache_dir)
    if tokenizer.mask_token is None:
        raise ValueError(f"the tokenizer of {model_args.teacher_model_name_or_path} has no mask token to mask with")
    collator = MaskedLMCollator(tokenizer, mlm_probability=data_args.mlm_probability, seed=training_args.seed)
    teacher = load_masked_lm(model_args.teacher_model_name_or_path, cache_dir=model_args.cache_dir)
    check_max_seq_length(data_args.max_seq_length, tokenizer, teacher)
    if model_args.student_model_name_or_path:
        student = load_masked_lm(model_args.student_model_name_or_path, what="student", cache_dir=model_args.cache_dir)
        student_tokenizer = AutoTokenizer.from_pretrained(model_args.student_model_name_or_path)
        check_same_tokenization(tokenizer, student_tokenizer, ["The quick brown fox jumps over the lazy dog."])
        check_teacher_student(teacher, student, terms=distillation_settings(training_args)[1])
    else:
        student = make_student(teacher, **student_flags)
    if model_args.freeze_position_embeddings:
        logger.info("Frozen at the teacher's values: %s", ", ".join(freeze_position_embeddings(student)))

    with training_args.main_process_first(desc="loading and tokenizing the corpus"):
        corpus = load_text_corpus(
            **corpus_flags,
            text_column=data_args.text_column,
            validation_split_percentage=data_args.validation_split_percentage,
            seed=training_args.seed,
            cache_dir=model_args.cache_dir,
        )
        data = tokenize_corpus(
            corpus,
            tokenizer,
            max_seq_length=data_args.max_seq_length,
            line_by_line=data_args.line_by_line,
            max_train_samples=data_args.max_train_samples,
            max_eval_samples=data_args.max_eval_samples,
        )
        # Masked once, so that the teacher, the student and every evaluation score the same tokens.
        held_out = mask_once(data["validation"], collator)

    trainer = DistillationTrainer(
        model=student,
        teacher_model=teacher,
        args=training_args,
        train_dataset=data["train"],
        eval_dataset=held_out,
        data_collator=collator,
        processing_class=tokenizer,
    )  # with a MaskedLMCollator, the trainer masks anew each epoch (MaskingEpochCallback)
    train_result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model()  # the student with its masked-LM head, and the tokenizer
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_state()

    if trainer.is_world_process_zero():
        score = dict(data_collator=collator, batch_size=training_args.per_device_eval_batch_size)
        teacher_metrics = masked_lm_metrics(teacher, held_out, **score, device=training_args.device)
        student_metrics = masked_lm_metrics(trainer.model, held_out, **score)
        trainer.log_metrics("eval", {f"teacher_{k}": v for k, v in teacher_metrics.items()} | student_metrics)
        trainer.save_metrics("eval", student_metrics)
        report = write_report_and_card(
            teacher,
            trainer.model,
            output_dir=training_args.output_dir,
            task="masked-lm",
            main_metric="perplexity",
            teacher_metrics=teacher_metrics,
            student_metrics=student_metrics,
            args=training_args,
            seq_len=data_args.max_seq_length,
            latency_repeats=model_args.latency_repeats,
            training_time_s=train_result.metrics.get("train_runtime"),
            teacher_name=model_args.teacher_model_name_or_path,
            base_model=hub_base_model(model_args.teacher_model_name_or_path, explicit=model_args.base_model_id),
            hub_model_id=training_args.hub_model_id,
            train_rows=len(data["train"]),
            eval_rows=len(held_out),
            pipeline_tag="fill-mask",
            dataset_name=HUB_DATASET if data_args.glue_dir else data_args.dataset_name,
            dataset_config=data_args.dataset_config_name,
            corpus=describe_corpus(**corpus_flags),
            student_start=model_args.student_model_name_or_path,
            settings=dict(
                kd_positions=training_args.kd_positions,
                mlm_probability=data_args.mlm_probability,
                max_seq_length=data_args.max_seq_length,
                line_by_line=data_args.line_by_line,
                freeze_position_embeddings=model_args.freeze_position_embeddings,
            ),
        )
        print(format_table(report))
    if training_args.push_to_hub:
        trainer.push_to_hub(commit_message="hf-distill task-agnostic (masked-LM) student")


if __name__ == "__main__":
    # All ranks leave together, after rank 0's report and card; then the process group is destroyed.
    with end_processes_together():
        main()
