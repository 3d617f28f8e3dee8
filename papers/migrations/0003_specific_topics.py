"""Topics that discriminate: "Language models" was on 94% of the sample papers (263 of 281), so a
subscriber who ticked it got generic LLM papers. It becomes "Pre-training & architectures" (same slug,
so subscribers keep their choice), and three topics take over what it lumped together. No default
topic covers more than 40% of the sample papers (tests/papers/test_tagging.py holds this).

Every paper is re-tagged with the new set, in batches, through the production tagging code.
"""

import importlib

from django.db import migrations

from papers.services.tagging import papers_retag, topic_model_build

PREVIOUS = importlib.import_module("papers.migrations.0002_default_topics_and_feeds").TOPICS

TOPICS = [
    (
        "language-models",
        "Pre-training & architectures",
        "How language models are built and pre-trained: objectives, architectures, tokenizers, scaling.",
        "pre-training, pretraining, pre-trained language model, pretraining objective, masked language model, "
        "masked language modeling, MLM, next-token prediction, decoder-only, encoder-only, encoder-decoder, "
        "tokenizer, tokenization, scaling law, model architecture, attention mechanism, state space model, "
        "Mamba, BERT",
    ),
    (
        "fine-tuning",
        "Fine-tuning & instruction tuning",
        "Adapting pre-trained models: supervised and instruction fine-tuning, parameter-efficient tuning, "
        "continual learning.",
        "fine-tuning, finetuning, fine-tuned, instruction tuning, instruction-tuned, supervised fine-tuning, "
        "SFT, parameter-efficient, PEFT, adapter, prompt tuning, catastrophic forgetting, continual learning",
    ),
    (
        "long-context",
        "Long context & memory",
        "Long inputs and memory: context windows, length extrapolation, positional encodings, KV cache.",
        "long context, long-context, context window, context length, length extrapolation, "
        "length generalization, positional encoding, position embedding, RoPE, long sequence, memory, "
        "lost in the middle",
    ),
    (
        "nlp-tasks",
        "Language understanding & NLP tasks",
        "Classic language tasks: classification, extraction, question answering, summarization, NLU.",
        "natural language understanding, NLU, text classification, named entity recognition, NER, "
        "sequence labeling, information extraction, sentiment, summarization, question answering, "
        "reading comprehension, GLUE, SuperGLUE, natural language inference",
    ),
]
NEW_SLUGS = [slug for slug, *_ in TOPICS if slug not in {p[0] for p in PREVIOUS}]
RETAG_BATCH = 500


def _set_topics(apps, topics) -> None:
    Topic = apps.get_model("papers", "Topic")
    for slug, name, description, keywords in topics:
        Topic.objects.update_or_create(
            slug=slug, defaults={"name": name, "description": description, "keywords": keywords}
        )


def _retag_all(apps) -> None:
    Paper = apps.get_model("papers", "Paper")
    model = topic_model_build(topics=list(apps.get_model("papers", "Topic").objects.order_by("id")))
    ids = list(Paper.objects.order_by("id").values_list("id", flat=True))
    for start in range(0, len(ids), RETAG_BATCH):
        papers = list(Paper.objects.filter(id__in=ids[start : start + RETAG_BATCH]).only("title", "abstract"))
        papers_retag(papers=papers, model=model, through=apps.get_model("papers", "PaperTopic"))


def forward(apps, schema_editor):
    _set_topics(apps, TOPICS)
    _retag_all(apps)


def backward(apps, schema_editor):
    apps.get_model("papers", "Topic").objects.filter(slug__in=NEW_SLUGS).delete()
    changed = {slug for slug, *_ in TOPICS}
    _set_topics(apps, [t for t in PREVIOUS if t[0] in changed])
    _retag_all(apps)


class Migration(migrations.Migration):
    dependencies = [("papers", "0002_default_topics_and_feeds")]
    operations = [migrations.RunPython(forward, backward)]
