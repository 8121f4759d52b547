//! Queries that several pages and answers share, each in one place: who may be named in blind
//! review ([`Blinds`]), which push counts ([`counting`]), the comparison of a task's
//! submissions ([`comparison`]) and a regrade ([`queue_regrade`]). Nothing here renders.

use std::collections::HashSet;
use std::sync::Arc;

use super::{stored, App, Failure};
use crate::report::Report;
use crate::review;
use crate::store::{Assignment, Submission};
use crate::task::TaskId;

/// Who may be named: the review settings of every task and the assignments that have a decision.
pub struct Blinds {
    blind_tasks: HashSet<TaskId>,
    decided: HashSet<String>,
}

impl Blinds {
    pub async fn load(app: &Arc<App>) -> Result<Blinds, Failure> {
        let tasks = app.tasks.clone();
        let blind_tasks =
            tokio::task::spawn_blocking(move || tasks.all().iter().filter(|spec| spec.review.blind).map(|spec| spec.id.clone()).collect::<HashSet<_>>())
                .await
                .map_err(|e| Failure::internal(e.to_string()))?;
        let decided = if blind_tasks.is_empty() {
            HashSet::new()
        } else {
            // One row per reviewed assignment, aggregated by the store.
            stored(app.store.review_states()).await?.into_iter().filter(|(_, state)| state.decided).map(|(assignment, _)| assignment).collect()
        };
        Ok(Blinds { blind_tasks, decided })
    }

    /// Whether this assignment's candidate is hidden from reviewers now.
    pub fn hidden(&self, assignment: &str, task: &TaskId) -> bool {
        self.blind_tasks.contains(task) && !self.decided.contains(assignment)
    }

    /// The name to show for a candidate.
    pub fn name(&self, assignment: &str, task: &TaskId, candidate: &str) -> String {
        if self.hidden(assignment, task) {
            review::alias(assignment)
        } else {
            candidate.to_string()
        }
    }

    pub fn assignment(&self, a: &mut Assignment) {
        a.candidate = self.name(&a.id, &a.task, &a.candidate);
    }

    pub fn submission(&self, s: &mut Submission) {
        s.candidate = self.name(&s.assignment, &s.task, &s.candidate);
    }

    /// A stored report's candidate field.
    pub fn report(&self, assignment: &str, task: &TaskId, report: &mut Report) {
        if self.hidden(assignment, task) {
            report.candidate = Some(review::alias(assignment));
        }
    }

    pub fn report_json(&self, assignment: &str, task: &TaskId, report: &mut serde_json::Value) {
        if self.hidden(assignment, task) {
            if let Some(object) = report.as_object_mut() {
                object.insert("candidate".into(), serde_json::Value::String(review::alias(assignment)));
            }
        }
    }
}

/// The push that counts for an assignment.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Counting {
    pub submission: i64,
    pub number: i64,
    /// When the candidate chose it; `None` when it counts as the last push.
    pub chosen_at: Option<i64>,
}

/// Which push counts: the candidate's choice where the task lets them choose, else the last push
/// (pushes after the deadline are refused at the door, so the last is the last before it).
pub async fn counting(app: &Arc<App>, a: &Assignment, submissions: &[Submission]) -> Result<Option<Counting>, Failure> {
    let chooses = app.tasks.get(&a.task).is_some_and(|t| t.candidate_chooses_final);
    if chooses {
        if let Some((submission, at)) = stored(app.store.final_choice(&a.id)).await? {
            if let Some(s) = submissions.iter().find(|s| s.id == submission) {
                return Ok(Some(Counting { submission, number: s.number, chosen_at: Some(at) }));
            }
        }
    }
    let deadline = a.deadline();
    Ok(submissions.iter().filter(|s| deadline.is_none_or(|d| s.pushed_at <= d)).max_by_key(|s| s.number).map(|s| Counting {
        submission: s.id,
        number: s.number,
        chosen_at: None,
    }))
}

/// Queues graded submissions again (one, or every one of a task) with the digests of the task
/// and data set as they are now, and wakes the workers; returns how many were queued.
pub async fn queue_regrade(app: &Arc<App>, submission: Option<i64>, task: Option<TaskId>) -> Result<usize, Failure> {
    let task_now = match (&task, submission) {
        (Some(task), _) => Some(task.clone()),
        (None, Some(id)) => stored(app.store.submission(id)).await?.map(|(s, _)| s.task),
        (None, None) => None,
    };
    let mut needs = std::collections::HashMap::new();
    if let Some(task_now) = task_now {
        let found =
            crate::job::needs_of(&app.tasks, &task_now).await.map_err(|e| Failure::internal(format!("task {task_now}: {}", crate::errors::Chain(&e))))?;
        needs.insert(task_now, found);
    }
    let n = stored(app.store.regrade(submission, task.as_ref(), &needs)).await?;
    app.work.notify_waiters();
    Ok(n)
}

/// The graded submission that counts for each assignment of a task (the candidate's chosen
/// final push where the task allows a choice, else the latest graded), best first.
pub async fn comparison(app: &Arc<App>, task: &TaskId) -> Result<Vec<crate::store::Submission>, Failure> {
    let submissions = stored(app.store.submissions(None, Some(task))).await?;
    let chooses = app.tasks.get(task).is_some_and(|t| t.candidate_chooses_final);
    let mut chosen: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    if chooses {
        let mut assignments: Vec<&str> = submissions.iter().map(|s| s.assignment.as_str()).collect();
        assignments.sort_unstable();
        assignments.dedup();
        for a in assignments {
            if let Some((submission, _)) = stored(app.store.final_choice(a)).await? {
                chosen.insert(a.to_string(), submission);
            }
        }
    }
    let mut latest: Vec<crate::store::Submission> = Vec::new();
    let graded: Vec<crate::store::Submission> = submissions.into_iter().filter(|s| s.score.is_some()).collect();
    for s in &graded {
        if latest.iter().any(|l| l.assignment == s.assignment) {
            continue;
        }
        // The chosen push if it is graded, else the newest graded one (submissions come newest first).
        let pick = chosen.get(&s.assignment).and_then(|id| graded.iter().find(|g| g.id == *id)).unwrap_or(s);
        latest.push(pick.clone());
    }
    latest.sort_by(|a, b| b.score.unwrap_or(0.0).total_cmp(&a.score.unwrap_or(0.0)));
    let blinds = Blinds::load(app).await?;
    latest.iter_mut().for_each(|s| blinds.submission(s));
    Ok(latest)
}
