"""`{% fragment "name" %}...{% endfragment %}`: marks a part of a digest template that repeats or is
optional. Rendered normally it is just its content; while newsletter.services.digest_templates compiles
the template, it is wrapped in <!--name--> markers so the compiler can cut it out."""

from django import template
from django.utils.safestring import mark_safe

register = template.Library()

COMPILING = "_compiling_fragments"  # context flag set by the compiler only


class FragmentNode(template.Node):
    def __init__(self, name: str, nodelist: template.NodeList) -> None:
        self.name = name
        self.nodelist = nodelist

    def render(self, context: template.Context) -> str:
        content = self.nodelist.render(context)
        if context.get(COMPILING):
            return mark_safe(f"<!--{self.name}-->{content}<!--/{self.name}-->")
        return content


@register.tag("fragment")
def fragment(parser: template.base.Parser, token: template.base.Token) -> FragmentNode:
    bits = token.split_contents()
    if len(bits) != 2 or bits[1][0] not in "\"'" or bits[1][0] != bits[1][-1]:
        raise template.TemplateSyntaxError('usage: {% fragment "name" %}...{% endfragment %}')
    nodelist = parser.parse(("endfragment",))
    parser.delete_first_token()
    return FragmentNode(bits[1][1:-1], nodelist)
