from django import forms
from django.contrib import admin

from moderation import services
from moderation.matcher import rule_problem
from moderation.models import BlockedTerm


class BlockedTermForm(forms.ModelForm):
    class Meta:
        model = BlockedTerm
        fields = ("term", "kind", "action", "note", "is_active")

    def clean(self):
        data = super().clean()
        term, kind = data.get("term"), data.get("kind")
        if term and kind:
            problem = rule_problem(term.strip(), kind)
            if problem:
                self.add_error("term", problem)
        return data


@admin.register(BlockedTerm)
class BlockedTermAdmin(admin.ModelAdmin):
    form = BlockedTermForm
    list_display = ("term", "kind", "action", "is_active", "note", "updated_at", "created_by")
    list_filter = ("kind", "action", "is_active")
    search_fields = ("term", "note")
    readonly_fields = ("created_by", "created_at", "updated_at")
    list_select_related = ("created_by",)
    list_per_page = 100

    def save_model(self, request, obj, form, change):
        services.blocked_term_save(term=obj, actor=request.user)

    def delete_model(self, request, obj):
        services.blocked_term_delete(term=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for term in queryset:
            services.blocked_term_delete(term=term, actor=request.user)
