"""The default ML taxonomy and the two default feeds. Operators edit both in the admin."""

from django.db import migrations

TOPICS = [
    (
        "language-models",
        "Language models",
        "Pre-training, fine-tuning and architecture of large language models.",
        "language model, large language model, LLM, pre-training, pretraining, instruction tuning, "
        "fine-tuning, tokenizer, next-token prediction, in-context learning, transformer, "
        "masked language model, autoregressive",
    ),
    (
        "multimodal",
        "Multimodal & vision-language",
        "Models that combine text with images, video or other modalities.",
        "multimodal, multi-modal, vision-language, MLLM, VLM, image-text, visual question answering, "
        "video understanding, visual, image captioning, CLIP",
    ),
    (
        "generative-vision",
        "Image & video generation",
        "Diffusion models and generative models of images, video and 3D.",
        "diffusion, diffusion model, text-to-image, image generation, video generation, image editing, "
        "3D generation, generative adversarial, GAN, denoising",
    ),
    (
        "speech-audio",
        "Speech & audio",
        "Speech recognition, speech synthesis, spoken language and audio models.",
        "speech, audio, ASR, speech recognition, text-to-speech, TTS, spoken, voice, music, "
        "speech synthesis",
    ),
    (
        "reinforcement-learning",
        "Reinforcement learning",
        "Reinforcement learning, reward modelling and preference optimization.",
        "reinforcement learning, RL, reward, reward model, RLHF, policy optimization, PPO, DPO, GRPO, "
        "preference optimization, policy gradient",
    ),
    (
        "efficiency",
        "Efficiency & compression",
        "Making models smaller and faster: quantization, pruning, distillation, efficient inference.",
        "quantization, pruning, sparsity, distillation, knowledge distillation, efficient inference, "
        "KV cache, compression, low-rank, LoRA, mixture of experts, MoE, speculative decoding, "
        "memory footprint, throughput, latency",
    ),
    (
        "retrieval-rag",
        "Retrieval & RAG",
        "Retrieval-augmented generation, search, reranking and embeddings.",
        "retrieval, retrieval-augmented, retrieval augmented generation, RAG, dense retrieval, "
        "reranking, reranker, search engine, embedding, knowledge base, retriever",
    ),
    (
        "evaluation-benchmarks",
        "Evaluation & benchmarks",
        "New benchmarks, evaluation methods and leaderboards.",
        "benchmark, evaluation, leaderboard, evaluation metric, test set, LLM-as-a-judge, "
        "human evaluation",
    ),
    (
        "safety-alignment",
        "Safety & alignment",
        "Alignment, safety, jailbreaks, hallucination, bias and misinformation.",
        "alignment, safety, jailbreak, harmful, red teaming, hallucination, toxicity, bias, fairness, "
        "privacy, misinformation, harm, risk, adversarial attack",
    ),
    (
        "agents-tools",
        "Agents & tool use",
        "LLM agents, planning, tool use and multi-agent systems.",
        "agent, agentic, tool use, tool learning, planning, web agent, multi-agent, function calling, "
        "API call, autonomous agent",
    ),
    (
        "data-datasets",
        "Data & datasets",
        "Datasets, data curation, synthetic data and data quality.",
        "dataset, data curation, synthetic data, data quality, annotation, corpus, data selection, "
        "data mixture, data filtering",
    ),
    (
        "reasoning",
        "Reasoning & math",
        "Chain-of-thought, mathematical and logical reasoning.",
        "reasoning, chain-of-thought, chain of thought, CoT, math, mathematical, theorem proving, "
        "logical reasoning, problem solving, test-time scaling",
    ),
    (
        "code",
        "Code generation",
        "Models that write, repair and understand code.",
        "code generation, code, program synthesis, software engineering, programming, code LLM, "
        "bug fixing",
    ),
    (
        "multilingual",
        "Multilingual & translation",
        "Multilingual models, cross-lingual transfer and machine translation.",
        "multilingual, cross-lingual, machine translation, low-resource language, translation, "
        "non-English",
    ),
    (
        "interpretability",
        "Interpretability",
        "Understanding what models learn: probing, mechanistic interpretability, explanations.",
        "interpretability, explainability, mechanistic interpretability, probing, neuron, circuit, "
        "attention head, sparse autoencoder",
    ),
]

FEEDS = [
    ("Hugging Face daily papers", "https://huggingface.co/api/daily_papers", 360),
    (
        "arXiv cs.CL + cs.LG (newest 100)",
        "https://export.arxiv.org/api/query?search_query=cat:cs.CL+OR+cat:cs.LG"
        "&sortBy=submittedDate&sortOrder=descending&max_results=100",
        720,
    ),
]


def create(apps, schema_editor):
    Topic = apps.get_model("papers", "Topic")
    Feed = apps.get_model("papers", "Feed")
    for slug, name, description, keywords in TOPICS:
        Topic.objects.update_or_create(
            slug=slug, defaults={"name": name, "description": description, "keywords": keywords}
        )
    for name, url, interval in FEEDS:
        Feed.objects.get_or_create(url=url, defaults={"name": name, "interval_minutes": interval})


def remove(apps, schema_editor):
    apps.get_model("papers", "Topic").objects.filter(slug__in=[t[0] for t in TOPICS]).delete()
    apps.get_model("papers", "Feed").objects.filter(url__in=[f[1] for f in FEEDS]).delete()


class Migration(migrations.Migration):
    dependencies = [("papers", "0001_initial")]
    operations = [migrations.RunPython(create, remove)]
