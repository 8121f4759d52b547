//! The candidate's `NOTES.md` as HTML: CommonMark (tables, strikethrough), with every piece of
//! HTML in it shown as text, links only to `http`, `https`, `mailto` or an anchor, and images
//! turned into links (a page an assessor opens loads nothing a candidate chose).

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, TagEnd};

/// Longest text rendered; the rest is cut (a note is a page, not a book).
pub const MAX_NOTES: usize = 64 << 10;
/// Links made per text; past them a link is its text alone. With [`MAX_URL`], this bounds what
/// reference links can multiply (`[a]: <a long URL>` once, then `[a]` thousands of times).
pub const MAX_LINKS: usize = 200;
/// A link's destination or title longer than this is dropped (`#`, no title).
pub const MAX_URL: usize = 2 << 10;

fn safe_url(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("mailto:") || lower.starts_with('#')
}

/// A link's destination if it is safe and short (else `#`), and its title if short.
fn bounded<'a>(dest_url: CowStr<'a>, title: CowStr<'a>) -> (CowStr<'a>, CowStr<'a>) {
    let dest_url = if safe_url(&dest_url) && dest_url.len() <= MAX_URL { dest_url } else { CowStr::Borrowed("#") };
    let title = if title.len() <= MAX_URL { title } else { CowStr::Borrowed("") };
    (dest_url, title)
}

/// Renders `text` to HTML that holds nothing the candidate could make run or load.
pub fn render(text: &str) -> String {
    let mut end = text.len().min(MAX_NOTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let parser = Parser::new_ext(&text[..end], Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH);
    let (mut links, mut open) = (0usize, Vec::new());
    let events = parser.filter_map(|event| match event {
        Event::Html(html) | Event::InlineHtml(html) => Some(Event::Text(html)),
        Event::Start(Tag::Link { link_type, dest_url, title, id } | Tag::Image { link_type, dest_url, title, id }) => {
            links += 1;
            // Past the limit a link is its text: its start and end are left out.
            open.push(links <= MAX_LINKS);
            if links > MAX_LINKS {
                return None;
            }
            let (dest_url, title) = bounded(dest_url, title);
            Some(Event::Start(Tag::Link { link_type, dest_url, title, id }))
        }
        Event::End(TagEnd::Link | TagEnd::Image) => open.pop().unwrap_or(false).then_some(Event::End(TagEnd::Link)),
        other => Some(other),
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

    #[test]
    fn reference_links_cannot_multiply_a_long_url() {
        let text = format!("[a]: https://example.org/{}\n\n{}", "x".repeat(30_000), "[a] ".repeat(8_000));
        let html = render(&text);
        assert!(html.len() < 200 << 10, "{} bytes", html.len());
        let short = format!("[a]: https://e.org/\n\n{}", "[a] ".repeat(1_000));
        let html = render(&short);
        assert_eq!(html.matches("<a href").count(), super::MAX_LINKS, "links past the limit are text");
        assert_eq!(html.matches("</a>").count(), super::MAX_LINKS);
        assert!(html.len() < 1 << 20, "{} bytes", html.len());
    }
}
