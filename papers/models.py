from django.db import models


def keywords_split(keywords: str) -> list[str]:
    """A topic's comma-separated keywords as a list; a function so migrations' models can use it."""
    return [k.strip() for k in keywords.split(",") if k.strip()]


class Topic(models.Model):
    """A subject subscribers can pick. Operators edit the taxonomy in the admin."""

    slug = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    # Comma-separated words or phrases; a hit in a paper's title or abstract tags the paper.
    keywords = models.TextField(blank=True, help_text="Comma-separated words or phrases.")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def keyword_list(self) -> list[str]:
        return keywords_split(self.keywords)


class Paper(models.Model):
    class Source(models.TextChoices):
        LISTING = "listing", "Paper listing"
        HUGGINGFACE = "huggingface", "Hugging Face daily papers"
        ARXIV = "arxiv", "arXiv API"

    # arXiv id (e.g. "2403.12345") where a source gives one; listings carry none.
    external_id = models.CharField(max_length=64, unique=True, null=True, blank=True)
    title = models.CharField(max_length=500)
    # Lowercased, punctuation-free title: the dedupe key for records without an external id.
    title_key = models.CharField(max_length=500, unique=True)
    abstract = models.TextField()  # as the source gave it (arXiv: LaTeX source)
    # What pages and emails show: LaTeX leftovers as plain text (papers.services.latex), set with `abstract`.
    abstract_clean = models.TextField(default="", editable=False)
    authors = models.JSONField(default=list, blank=True)
    published_at = models.DateTimeField(null=True, blank=True)
    ingested_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    source = models.CharField(max_length=20, choices=Source.choices)
    url = models.URLField(max_length=500, blank=True)
    upvotes = models.PositiveIntegerField(null=True, blank=True)
    github_url = models.URLField(max_length=500, blank=True)
    github_stars = models.PositiveIntegerField(null=True, blank=True)
    topics = models.ManyToManyField(Topic, through="PaperTopic", related_name="papers", blank=True)

    class Meta:
        ordering = ["-ingested_at", "-id"]

    def __str__(self) -> str:
        return self.title


class PaperTopic(models.Model):
    paper = models.ForeignKey(Paper, on_delete=models.CASCADE)
    topic = models.ForeignKey(Topic, on_delete=models.CASCADE)
    score = models.FloatField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["paper", "topic"], name="uniq_paper_topic")]

    def __str__(self) -> str:
        return f"{self.topic_id}:{self.paper_id} ({self.score:.2f})"


class Feed(models.Model):
    """A URL fetched on a schedule by Celery beat (papers.tasks.fetch_due_feeds)."""

    name = models.CharField(max_length=100)
    url = models.URLField(max_length=1000, unique=True)
    enabled = models.BooleanField(default=True)
    interval_minutes = models.PositiveIntegerField(default=360)
    last_fetched_at = models.DateTimeField(null=True, blank=True)
    last_status = models.CharField(max_length=500, blank=True)
    # Conditional GET: an unchanged feed costs a 304 and no parsing.
    etag = models.CharField(max_length=200, blank=True)
    last_modified = models.CharField(max_length=100, blank=True)

    def __str__(self) -> str:
        return self.name
