//! The assessors' review desk, without I/O: what reviewers record (line comments, rubric scores,
//! decisions, releases of feedback) as the JSON bodies of [`ReviewItem`]s, how several reviewers'
//! scores sum up (side by side, disagreements marked), blind aliases, and the pieces of the code
//! view ([`code`]: a commit's files, highlighting, diffs against the starter, notebooks;
//! [`markdown`]: the candidate's NOTES.md, with any HTML in it escaped).
//!
//! Invariants:
//! - A decision is the latest one recorded; every earlier one is kept (who, when, why).
//! - Released feedback is a snapshot taken at release: what the candidate sees does not change
//!   when a reviewer edits a note afterwards, and nothing is shown before a release.
//! - A blind task's reviewers see [`alias`] instead of the candidate until a decision exists.

pub mod code;
pub mod markdown;

use serde::{Deserialize, Serialize};

use crate::store::{ReviewItem, ReviewKind};
use crate::task::ReviewSpec;

/// A comment on one line of one file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommentBody {
    pub file: String,
    pub line: u32,
    pub text: String,
}

/// One criterion's level (by name) and note.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CriterionScore {
    pub criterion: String,
    pub level: String,
    #[serde(default)]
    pub note: String,
}

/// One reviewer's scores of one submission.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScoresBody {
    pub scores: Vec<CriterionScore>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Advance,
    Hold,
    Reject,
}

impl Decision {
    pub const ALL: [Decision; 3] = [Decision::Advance, Decision::Hold, Decision::Reject];
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Advance => "advance",
            Decision::Hold => "hold",
            Decision::Reject => "reject",
        }
    }
    pub fn parse(text: &str) -> Option<Decision> {
        Decision::ALL.into_iter().find(|d| d.as_str() == text)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DecisionBody {
    pub decision: Decision,
    pub reason: String,
}

/// Feedback as released to the candidate: a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReleaseBody {
    pub criteria: Vec<ReleasedCriterion>,
    /// The total score, when the task lets it be released.
    pub score: Option<f64>,
    #[serde(default)]
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReleasedCriterion {
    pub title: String,
    /// The reviewers' notes, without their names.
    pub notes: Vec<String>,
    /// The levels given, when the score may be released.
    pub levels: Vec<String>,
}

/// The stable alias a blind review shows for an assignment.
pub fn alias(assignment: &str) -> String {
    let digest = crate::secret::token_hash(&format!("takehome-alias\0{assignment}"));
    format!("Candidate {}", digest[..6].to_ascii_uppercase())
}

/// Where a score stands in its cohort: the share of the cohort's scores at or below it (0–100).
pub fn percentile(score: f64, cohort: &[f64]) -> Option<f64> {
    (!cohort.is_empty()).then(|| 100.0 * cohort.iter().filter(|&&s| s <= score).count() as f64 / cohort.len() as f64)
}

/// An SVG histogram of the cohort's scores (ten bins of 10 points), the candidate's bin and score
/// marked, and the task's baselines (reference, weak … as `check` graded them) as dashed lines.
pub fn cohort_histogram(cohort: &[f64], mark: Option<f64>, baselines: &[(String, f64)]) -> maud::Markup {
    let mut bins = [0usize; 10];
    for &s in cohort {
        bins[((s / 10.0).floor().clamp(0.0, 9.0)) as usize] += 1;
    }
    let most = bins.iter().copied().max().unwrap_or(0).max(1);
    let (width, height, left, bottom) = (420.0, 140.0, 30.0, 20.0);
    let bar = (width - left) / 10.0;
    let marked = mark.map(|m| ((m / 10.0).floor().clamp(0.0, 9.0)) as usize);
    let at = |score: f64| left + (score.clamp(0.0, 100.0) / 100.0) * (width - left);
    let one = |v: f64| format!("{v:.1}");
    maud::html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(width) height=(height) role="img" aria-label="cohort score histogram" font-size="10" {
            @for (i, &n) in bins.iter().enumerate() {
                @let h = (height - bottom - 10.0) * n as f64 / most as f64;
                @let x = left + i as f64 * bar;
                rect x=(one(x + 1.0)) y=(one(height - bottom - h)) width=(one(bar - 2.0)) height=(one(h)) fill=(if marked == Some(i) { "#1f4fbf" } else { "#b9c3d3" }) {
                    title { (i * 10) "–" (i * 10 + 10) ": " (n) }
                }
                text x=(one(x + bar / 2.0)) y=(one(height - 6.0)) text-anchor="middle" { (i * 10) }
            }
            @for (i, (name, score)) in baselines.iter().enumerate() {
                @let x = at(*score);
                line x1=(one(x)) x2=(one(x)) y1="20" y2=(one(height - bottom)) stroke="#6b7280" stroke-dasharray="3 2" {}
                text x=(one((x + 2.0).min(width - 60.0))) y=(30 + 11 * (i % 6)) fill="#6b7280" { (name) }
            }
            @if let Some(m) = mark {
                @let x = at(m);
                line x1=(one(x)) x2=(one(x)) y1="4" y2=(one(height - bottom)) stroke="#b3261e" stroke-width="2" {}
                text x=(one((x + 3.0).min(width - 30.0))) y="12" fill="#b3261e" { (one(m)) }
            }
            text x="2" y="12" { (most) }
        }
    }
}

/// Longest note, comment or reason kept.
pub const MAX_TEXT: usize = 10_000;

/// `text` cut to [`MAX_TEXT`] characters, trimmed.
pub fn clip(text: &str) -> String {
    text.trim().chars().take(MAX_TEXT).collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct Comment {
    pub id: i64,
    pub submission: i64,
    pub file: String,
    pub line: u32,
    pub text: String,
    pub author: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One reviewer's latest scores.
#[derive(Debug, Clone, Serialize)]
pub struct ReviewerScores {
    pub item: i64,
    pub author: String,
    pub submission: i64,
    /// Per criterion of the task, in its order: the level's index and name, and the note.
    pub levels: Vec<Option<(usize, String)>>,
    pub notes: Vec<String>,
    /// 0–100 once every criterion is scored.
    pub rubric: Option<f64>,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DecisionRecord {
    pub decision: Decision,
    pub reason: String,
    pub author: String,
    pub at: i64,
    pub submission: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReleaseRecord {
    pub body: ReleaseBody,
    pub author: String,
    pub at: i64,
    pub submission: i64,
}

/// Per criterion: whether the reviewers disagree (gave different levels) and by how much.
#[derive(Debug, Clone, Serialize)]
pub struct CriterionSummary {
    pub id: String,
    pub title: String,
    /// Highest minus lowest level index among the reviewers who scored it.
    pub spread: usize,
    pub disagreement: bool,
    /// Mean points (0–100) over the reviewers who scored it.
    pub mean: Option<f64>,
}

/// An assignment's review as a whole.
#[derive(Debug, Clone, Serialize)]
pub struct Desk {
    pub comments: Vec<Comment>,
    pub reviewers: Vec<ReviewerScores>,
    pub criteria: Vec<CriterionSummary>,
    /// Mean of the reviewers' complete rubric scores.
    pub rubric: Option<f64>,
    /// The latest decision.
    pub decision: Option<DecisionRecord>,
    /// Every decision, oldest first.
    pub decisions: Vec<DecisionRecord>,
    /// The latest release of feedback.
    pub release: Option<ReleaseRecord>,
}

impl Desk {
    /// Sums up an assignment's items (oldest first, as the store gives them). Items whose body
    /// cannot be read (written by another version) are left out.
    pub fn build(spec: &ReviewSpec, items: &[ReviewItem]) -> Desk {
        let mut desk = Desk { comments: vec![], reviewers: vec![], criteria: vec![], rubric: None, decision: None, decisions: vec![], release: None };
        for item in items {
            match item.kind {
                ReviewKind::Comment => {
                    if let Ok(body) = serde_json::from_str::<CommentBody>(&item.body) {
                        desk.comments.push(Comment {
                            id: item.id,
                            submission: item.submission,
                            file: body.file,
                            line: body.line,
                            text: body.text,
                            author: item.author.clone(),
                            created_at: item.created_at,
                            updated_at: item.updated_at,
                        });
                    }
                }
                ReviewKind::Scores => {
                    let Ok(body) = serde_json::from_str::<ScoresBody>(&item.body) else { continue };
                    let mut levels = Vec::with_capacity(spec.criteria.len());
                    let mut notes = Vec::with_capacity(spec.criteria.len());
                    for criterion in &spec.criteria {
                        let given = body.scores.iter().find(|s| s.criterion == criterion.id);
                        levels.push(given.and_then(|s| criterion.level_index(&s.level).map(|i| (i, s.level.clone()))));
                        notes.push(given.map(|s| s.note.clone()).unwrap_or_default());
                    }
                    let rubric = spec.rubric_score(&levels.iter().map(|l| l.as_ref().map(|(i, _)| *i)).collect::<Vec<_>>());
                    let scores = ReviewerScores {
                        item: item.id,
                        author: item.author.clone(),
                        submission: item.submission,
                        levels,
                        notes,
                        rubric,
                        updated_at: item.updated_at,
                    };
                    // One entry per reviewer: the latest.
                    desk.reviewers.retain(|r| r.author != item.author);
                    desk.reviewers.push(scores);
                }
                ReviewKind::Decision => {
                    if let Ok(body) = serde_json::from_str::<DecisionBody>(&item.body) {
                        desk.decisions.push(DecisionRecord {
                            decision: body.decision,
                            reason: body.reason,
                            author: item.author.clone(),
                            at: item.created_at,
                            submission: item.submission,
                        });
                    }
                }
                ReviewKind::Release => {
                    if let Ok(body) = serde_json::from_str::<ReleaseBody>(&item.body) {
                        desk.release = Some(ReleaseRecord { body, author: item.author.clone(), at: item.created_at, submission: item.submission });
                    }
                }
            }
        }
        desk.decision = desk.decisions.last().cloned();
        for (index, criterion) in spec.criteria.iter().enumerate() {
            let given: Vec<usize> = desk.reviewers.iter().filter_map(|r| r.levels[index].as_ref().map(|(i, _)| *i)).collect();
            let spread = match (given.iter().max(), given.iter().min()) {
                (Some(max), Some(min)) => max - min,
                _ => 0,
            };
            let mean = (!given.is_empty()).then(|| given.iter().map(|&i| criterion.points(i)).sum::<f64>() / given.len() as f64);
            desk.criteria.push(CriterionSummary { id: criterion.id.clone(), title: criterion.title.clone(), spread, disagreement: spread > 0, mean });
        }
        let complete: Vec<f64> = desk.reviewers.iter().filter_map(|r| r.rubric).collect();
        desk.rubric = (!complete.is_empty()).then(|| complete.iter().sum::<f64>() / complete.len() as f64);
        desk
    }

    /// What a release would give the candidate now.
    pub fn feedback(&self, spec: &ReviewSpec, score: Option<f64>, message: &str) -> ReleaseBody {
        let criteria = spec
            .criteria
            .iter()
            .enumerate()
            .map(|(index, criterion)| ReleasedCriterion {
                title: criterion.title.clone(),
                notes: self.reviewers.iter().map(|r| r.notes[index].trim().to_string()).filter(|n| !n.is_empty()).collect(),
                levels: if spec.release_score {
                    self.reviewers.iter().filter_map(|r| r.levels[index].as_ref().map(|(_, name)| name.clone())).collect()
                } else {
                    vec![]
                },
            })
            .collect();
        ReleaseBody { criteria, score: if spec.release_score { score } else { None }, message: message.to_string() }
    }
}

/// Checks a reviewer's scores against the rubric: every criterion named must exist and every level
/// must be one of its levels. Returns the problem, worded for the reviewer.
pub fn check_scores(spec: &ReviewSpec, scores: &[CriterionScore]) -> Result<(), String> {
    if spec.criteria.is_empty() {
        return Err("this task has no rubric (review.criteria in its task.yaml)".into());
    }
    for score in scores {
        let Some(criterion) = spec.criterion(&score.criterion) else {
            return Err(format!(
                "no criterion {:?} (expected one of {})",
                score.criterion,
                spec.criteria.iter().map(|c| c.id.as_str()).collect::<Vec<_>>().join(", ")
            ));
        };
        if !score.level.is_empty() && criterion.level_index(&score.level).is_none() {
            return Err(format!(
                "{}: no level {:?} (expected one of {})",
                criterion.id,
                score.level,
                criterion.levels.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::Criterion;

    fn spec() -> ReviewSpec {
        let levels = |names: &[&str]| names.iter().map(|n| (n.to_string(), format!("{n} work"))).collect();
        ReviewSpec {
            blind: true,
            release_score: false,
            automatic_weight: 70.0,
            rubric_weight: 30.0,
            criteria: vec![
                Criterion { id: "design".into(), title: "Design".into(), weight: 2.0, levels: levels(&["weak", "fair", "strong"]) },
                Criterion { id: "notes".into(), title: "Notes".into(), weight: 1.0, levels: levels(&["missing", "present"]) },
            ],
        }
    }

    fn item(id: i64, kind: ReviewKind, author: &str, body: serde_json::Value) -> ReviewItem {
        ReviewItem { id, assignment: "a".into(), submission: 1, kind, author: author.into(), body: body.to_string(), created_at: id, updated_at: id }
    }

    #[test]
    fn reviewers_side_by_side_with_disagreement_and_latest_decision() {
        let spec = spec();
        let items = vec![
            item(
                1,
                ReviewKind::Scores,
                "ann",
                serde_json::json!({"scores": [{"criterion": "design", "level": "strong", "note": "clear"}, {"criterion": "notes", "level": "present"}]}),
            ),
            item(
                2,
                ReviewKind::Scores,
                "bob",
                serde_json::json!({"scores": [{"criterion": "design", "level": "weak", "note": "tangled"}, {"criterion": "notes", "level": "present"}]}),
            ),
            item(3, ReviewKind::Decision, "ann", serde_json::json!({"decision": "hold", "reason": "ask bob"})),
            item(4, ReviewKind::Decision, "bob", serde_json::json!({"decision": "advance", "reason": "agreed"})),
            item(
                5,
                ReviewKind::Scores,
                "ann",
                serde_json::json!({"scores": [{"criterion": "design", "level": "fair"}, {"criterion": "notes", "level": "present"}]}),
            ),
        ];
        let desk = Desk::build(&spec, &items);
        assert_eq!(desk.reviewers.len(), 2);
        assert_eq!(desk.reviewers.iter().find(|r| r.author == "ann").unwrap().levels[0].as_ref().unwrap().1, "fair");
        assert!(desk.criteria[0].disagreement && desk.criteria[0].spread == 1);
        assert!(!desk.criteria[1].disagreement);
        // ann: (2×50 + 1×100)/3 = 66.67; bob: (2×0 + 100)/3 = 33.33.
        assert!((desk.rubric.unwrap() - 50.0).abs() < 1e-9);
        assert_eq!(desk.decision.as_ref().unwrap().decision, Decision::Advance);
        assert_eq!(desk.decisions.len(), 2);
        assert!((spec.overall(80.0, desk.rubric) - (0.7 * 80.0 + 0.3 * 50.0)).abs() < 1e-9);
        let feedback = desk.feedback(&spec, Some(71.0), "");
        assert_eq!(feedback.score, None);
        assert!(feedback.criteria[0].levels.is_empty());
        assert_eq!(feedback.criteria[0].notes, vec!["tangled".to_string()]);
    }

    #[test]
    fn scores_are_checked_against_the_rubric() {
        let spec = spec();
        let ok = [CriterionScore { criterion: "design".into(), level: "fair".into(), note: String::new() }];
        assert!(check_scores(&spec, &ok).is_ok());
        let bad = [CriterionScore { criterion: "design".into(), level: "great".into(), note: String::new() }];
        assert!(check_scores(&spec, &bad).unwrap_err().contains("weak, fair, strong"));
        let unknown = [CriterionScore { criterion: "speed".into(), level: "fair".into(), note: String::new() }];
        assert!(check_scores(&spec, &unknown).unwrap_err().contains("design, notes"));
    }

    #[test]
    fn percentiles_and_histograms() {
        assert_eq!(percentile(50.0, &[10.0, 50.0, 90.0, 95.0]), Some(50.0));
        assert_eq!(percentile(50.0, &[]), None);
        let svg = cohort_histogram(&[5.0, 55.0, 57.0, 100.0], Some(57.0), &[("reference".into(), 97.0)]).into_string();
        assert!(svg.contains("#1f4fbf") && svg.contains(">57.0<") && svg.contains(">reference<"), "{svg}");
        assert_eq!(svg.matches("<rect").count(), 10);
    }

    #[test]
    fn aliases_are_stable_and_distinct() {
        assert_eq!(alias("abc"), alias("abc"));
        assert_ne!(alias("abc"), alias("abd"));
        assert!(alias("abc").starts_with("Candidate "));
    }
}
