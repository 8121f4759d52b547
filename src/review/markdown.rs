//! The candidate's `NOTES.md` as HTML: CommonMark (tables, strikethrough), with every piece of
//! HTML in it shown as text, links only to `http`, `https`, `mailto` or an anchor, and images
//! turned into links (a page an assessor opens loads nothing a candidate chose).

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, TagEnd};

/// Longest text rendered; the rest is cut (a note is a page, not a book).
pub const MAX_NOTES: usize = 64 << 10;

fn safe_url(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("mailto:") || lower.starts_with('#')
}

/// Renders `text` to HTML that holds nothing the candidate could make run or load.
pub fn render(text: &str) -> String {
    let mut end = text.len().min(MAX_NOTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let parser = Parser::new_ext(&text[..end], Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH);
    let events = parser.map(|event| match event {
        Event::Html(html) | Event::InlineHtml(html) => Event::Text(html),
        Event::Start(Tag::Link { link_type, dest_url, title, id }) => {
            let dest_url = if safe_url(&dest_url) { dest_url } else { CowStr::Borrowed("#") };
            Event::Start(Tag::Link { link_type, dest_url, title, id })
        }
        Event::Start(Tag::Image { link_type, dest_url, title, id }) => {
            let dest_url = if safe_url(&dest_url) { dest_url } else { CowStr::Borrowed("#") };
            Event::Start(Tag::Link { link_type, dest_url, title, id })
        }
        Event::End(TagEnd::Image) => Event::End(TagEnd::Link),
        other => other,
    });
    let mut out = String::new();
    pulldown_cmark::html::push_html(&mut out, events);
    out
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn html_is_text_and_links_are_filtered() {
        let html = render(
            "# Approach\n\n<script>alert(1)</script>\n\nInline <img src=x onerror=alert(2)> and [x](javascript:alert(3)) \
             and ![pixel](https://tracker.example/p.gif) and [ok](https://example.org).\n",
        );
        assert!(html.contains("<h1>Approach</h1>"), "{html}");
        assert!(!html.contains("<script") && html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("javascript:"), "{html}");
        assert!(html.contains("href=\"https://tracker.example/p.gif\">pixel</a>"), "{html}");
        assert!(html.contains("href=\"https://example.org\""), "{html}");
    }
}
