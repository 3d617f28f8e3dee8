from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from papers.models import Feed, Paper, PaperTopic, Topic
from papers.services.latex import latex_to_text


@admin.register(Topic)
class TopicAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "paper_count"]
    search_fields = ["name", "slug", "keywords"]
    prepopulated_fields = {"slug": ["name"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(paper_count=Count("papers"))

    @admin.display(ordering="paper_count", description="papers")
    def paper_count(self, topic: Topic) -> int:
        return topic.paper_count


class PaperTopicInline(admin.TabularInline):
    model = PaperTopic
    extra = 0
    fields = ["topic", "score"]
    readonly_fields = ["score"]


@admin.register(Paper)
class PaperAdmin(admin.ModelAdmin):
    list_display = [
        "title",
        "external_id",
        "source",
        "upvotes",
        "github_stars",
        "published_at",
        "ingested_at",
    ]
    list_filter = ["source", "topics", "ingested_at"]
    search_fields = ["title", "external_id", "abstract"]
    readonly_fields = ["title_key", "ingested_at", "updated_at"]
    date_hierarchy = "ingested_at"
    inlines = [PaperTopicInline]

    def save_model(self, request, obj: Paper, form, change: bool) -> None:
        obj.abstract_clean = latex_to_text(obj.abstract)  # the shown copy follows an edited abstract
        super().save_model(request, obj, form, change)


@admin.register(Feed)
class FeedAdmin(admin.ModelAdmin):
    list_display = ["name", "url", "enabled", "interval_minutes", "last_fetched_at", "last_status"]
    list_filter = ["enabled"]
    readonly_fields = ["last_fetched_at", "last_status", "etag", "last_modified"]
    actions = ["fetch_now"]

    @admin.action(description="Fetch the selected feeds now")
    def fetch_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        from papers.tasks import fetch_feed

        for feed_id in queryset.values_list("id", flat=True):
            fetch_feed.delay_on_commit(feed_id)
        self.message_user(request, f"Queued {queryset.count()} feed fetch(es).", messages.SUCCESS)
