"""Markdown to Telegram HTML, and splitting: examples and properties."""

from __future__ import annotations

import html
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.telegram.formatting import markdown_to_html, split_markdown

TAG = re.compile(r"<(/?)(b|i|s|code|pre|a|blockquote)(?: [^>]*)?>")


def balanced(text: str) -> bool:
    """Every tag closed, in order, and no stray '<' outside tags (Telegram's parser is strict)."""
    stack: list[str] = []
    pos = 0
    for m in TAG.finditer(text):
        if "<" in text[pos : m.start()] or ">" in text[pos : m.start()]:
            return False
        pos = m.end()
        if m.group(1):
            if not stack or stack.pop() != m.group(2):
                return False
        else:
            stack.append(m.group(2))
    return not stack and "<" not in text[pos:] and ">" not in text[pos:]


def test_examples() -> None:
    assert (
        markdown_to_html("**bold** and *it* a<b & c") == "<b>bold</b> and <i>it</i> a&lt;b &amp; c"
    )
    assert markdown_to_html("snake_case_name stays") == "snake_case_name stays"
    assert markdown_to_html("`x < 1`") == "<code>x &lt; 1</code>"
    assert markdown_to_html("```py\nif a < b:\n    **no**\n```") == (
        '<pre><code class="language-py">if a &lt; b:\n    **no**</code></pre>'
    )
    assert (
        markdown_to_html("[site](https://e.x/?a=1&b=2)")
        == '<a href="https://e.x/?a=1&amp;b=2">site</a>'
    )
    assert markdown_to_html("# Title") == "<b>Title</b>"
    assert markdown_to_html("> q1\n> q2") == "<blockquote>q1\nq2</blockquote>"
    assert markdown_to_html("[**a](https://x)** b").count("<b>") == 0  # no tag across a link


markdownish = st.lists(
    st.sampled_from(list("ab _*~`[]()<>&#>-\n") + ["https://x", "```", "**", "__", "](https://y)"]),
    max_size=80,
).map("".join)


@settings(max_examples=400, deadline=None)
@given(markdownish)
def test_html_is_always_balanced_and_escaped(text: str) -> None:
    out = markdown_to_html(text)
    assert balanced(out), out
    # Nothing of the text is lost: stripped of tags and unescaped, the letters are all there
    # (except a code fence's language name, which moves into the class attribute).
    plain = html.unescape(TAG.sub("", out))
    without_languages = re.sub(r"```[\w+#.-]*", "```", text)
    for letter in "ab":
        assert without_languages.count(letter) <= plain.count(letter) <= text.count(letter)


paragraphs = st.lists(
    st.one_of(
        st.text(alphabet="xyz \n", min_size=1, max_size=900),
        st.builds(lambda body: "```sh\n" + body + "\n```", st.text(alphabet="cd\n", max_size=3000)),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(paragraphs, st.integers(min_value=200, max_value=4000))
def test_split_respects_the_limit_and_keeps_code_blocks_whole(parts: list[str], limit: int) -> None:
    text = "\n\n".join(parts)
    chunks = split_markdown(text, limit)
    assert all(len(c) <= limit for c in chunks)
    for c in chunks:
        assert sum(1 for line in c.split("\n") if line.strip().startswith("```")) % 2 == 0
    # The content survives (whitespace and the fences a split adds aside).
    strip = lambda s: re.sub(r"\s|```sh|```", "", s)  # noqa: E731
    assert strip("".join(chunks)) == strip(text)


def test_short_text_is_one_message() -> None:
    assert split_markdown("hello", 4000) == ["hello"]
