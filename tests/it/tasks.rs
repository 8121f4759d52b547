//! Task files: every bad fixture gives exactly its expected errors, all at once; the real tasks load.

use super::common::repo_root;

#[test]
fn bad_task_files_give_every_error_with_file_and_field() {
    let root = repo_root().join("tests/fixtures/bad-tasks");
    let mut n_checked = 0;
    for entry in std::fs::read_dir(root.join("tasks")).unwrap() {
        let dir = entry.unwrap().path();
        let expected_file = dir.join("expected.txt");
        let result = takehome::task::load(&dir);
        if !expected_file.exists() {
            assert!(result.is_ok(), "{}: expected to be valid, got:\n{}", dir.display(), result.unwrap_err());
            continue;
        }
        let error = result.expect_err("an invalid task file must be refused");
        let prefix = format!("{}/", root.display());
        let got = error.to_string().replace(&prefix, "");
        let expected = std::fs::read_to_string(&expected_file).unwrap();
        assert_eq!(got.trim_end(), expected.trim_end(), "{}", dir.display());
        n_checked += 1;
    }
    assert!(n_checked >= 6, "only {n_checked} bad task fixtures were checked");
}

#[test]
fn shipped_tasks_are_valid() {
    for id in ["diamond-cut", "penguins-cleaning"] {
        let task = takehome::task::load(&repo_root().join("tasks").join(id)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(task.id, id);
        // The truth is never among a step's inputs.
        for step in &task.steps {
            for input in &step.inputs {
                assert!(!task.grading.truth.starts_with(&format!("{input}/")) && task.grading.truth != *input);
            }
        }
    }
}
