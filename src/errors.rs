//! How an error is shown to a person. The house rule: an error's `Display` says what failed at its
//! own layer and nothing of its cause; the cause is its `source()`. Whoever shows an error (a log
//! line, an answer's message, a report's `infrastructure_error`, the CLI) shows the whole chain
//! with [`chain`], each layer once, so that no layer repeats another and none is lost. Some
//! libraries' errors both say their cause and return it (deadpool's, tokio-postgres's): a layer
//! already said whole by the layer above it is left out.

use std::error::Error;
use std::fmt;

/// An error and its causes, outermost first, joined by ": " (`{}` of [`Chain`]).
pub fn chain(error: &(dyn Error + 'static)) -> String {
    Chain(error).to_string()
}

/// Shows an error with its causes: `write!(f, "{}", Chain(&error))`, or `%Chain(&error)` in a
/// tracing field.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let layers = std::iter::successors(Some(self.0), |&error| error.source()).map(ToString::to_string);
        f.write_str(&join(layers))
    }
}

/// Layers of an error, outermost first, joined by ": "; an empty layer, or one the layer above
/// it already said whole, is left out.
pub fn join(layers: impl Iterator<Item = String>) -> String {
    let mut out = String::new();
    let mut above = String::new();
    for text in layers {
        if text.is_empty() || above.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
        above = text;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read the task")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn each_layer_is_said_once_outermost_first() {
        let error = Outer(std::io::Error::new(std::io::ErrorKind::NotFound, "task.yaml: no such file"));
        assert_eq!(chain(&error), "cannot read the task: task.yaml: no such file");
        assert_eq!(format!("{}", Chain(&error)), chain(&error));
    }

    #[derive(Debug, thiserror::Error)]
    #[error("error connecting to server: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn a_librarys_layer_that_repeats_its_cause_is_said_once() {
        let error = Outer2(Repeats(std::io::Error::other("Network is unreachable")));
        assert_eq!(chain(&error), "no connection: error connecting to server: Network is unreachable");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("no connection")]
    struct Outer2(#[source] Repeats);
}
