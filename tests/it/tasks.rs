//! Task files: every bad fixture gives exactly its expected errors, all at once (those of the task
//! file in expected.txt, those of its data in expected-data.txt); the shipped tasks load and their
//! data holds.

use super::common::repo_root;

#[test]
fn bad_task_files_give_every_error_with_file_and_field() {
    let root = repo_root().join("tests/fixtures/bad-tasks");
    let (mut n_checked, mut n_data) = (0, 0);
    for entry in std::fs::read_dir(root.join("tasks")).unwrap() {
        let dir = entry.unwrap().path();
        let expected_file = dir.join("expected.txt");
        let result = takehome::task::load(&dir);
        let prefix = format!("{}/", root.display());
        if !expected_file.exists() {
            // The task file holds; its data must give exactly the expected problems (or none).
            let spec = result.unwrap_or_else(|error| panic!("{}: expected to be valid, got:\n{error}", dir.display()));
            let problems = takehome::grading::task_data::check(&spec);
            let got = takehome::grading::task_data::render(&spec, &problems).replace(&prefix, "");
            let expected = std::fs::read_to_string(dir.join("expected-data.txt")).unwrap_or_default();
            assert_eq!(got.trim_end(), expected.trim_end(), "{}", dir.display());
            n_data += usize::from(!expected.is_empty());
            continue;
        }
        let error = result.expect_err("an invalid task file must be refused");
        let got = error.to_string().replace(&prefix, "");
        let expected = std::fs::read_to_string(&expected_file).unwrap();
        assert_eq!(got.trim_end(), expected.trim_end(), "{}", dir.display());
        n_checked += 1;
    }
    assert!(n_checked >= 6, "only {n_checked} bad task fixtures were checked");
    assert!(n_data >= 4, "only {n_data} bad task data fixtures were checked");
}

#[test]
fn shipped_tasks_are_valid() {
    // Discovered, not listed: a new task is checked as soon as it has a task.yaml.
    let shipped = takehome::check::discover_tasks(&repo_root()).unwrap();
    assert!(shipped.len() >= 2, "{shipped:?}");
    for dir in shipped {
        let task = takehome::task::load(&dir).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(Some(task.id.as_str()), dir.file_name().and_then(|n| n.to_str()));
        let problems = takehome::grading::task_data::check(&task);
        assert!(problems.is_empty(), "{}", takehome::grading::task_data::render(&task, &problems));
        // The truth is never among a step's inputs.
        for step in &task.steps {
            for input in &step.inputs {
                for output in &task.outputs {
                    assert!(!output.truth.starts_with(&format!("{input}/")) && output.truth != *input);
                }
            }
        }
    }
}

#[test]
fn a_step_after_one_that_read_hidden_data_keeps_its_logs_from_the_candidate() {
    // Steps share /workspace and /output: train reads only public data, but it runs after clean,
    // which read the hidden raw records, and could print what clean left in /output.
    let task = takehome::task::load(&super::common::repo_root().join("tasks/penguins-pipeline")).unwrap();
    let logs: Vec<(&str, bool, bool)> = task.steps.iter().map(|s| (s.name.as_str(), s.reads_hidden(), s.candidate_logs)).collect();
    assert_eq!(logs, [("clean", true, false), ("train", false, false), ("predict", true, false)]);
    // A public step before any hidden one still shows its logs.
    let task = takehome::task::load(&super::common::repo_root().join("tasks/diamond-cut")).unwrap();
    assert!(task.steps[0].candidate_logs && !task.steps[1].candidate_logs);
}

#[test]
fn a_step_runs_the_script_or_the_notebook_the_submission_holds() {
    let task = takehome::task::load(&repo_root().join("tasks/diamond-cut")).unwrap();
    let train = &task.steps[0];
    assert_eq!(train.run, "python train.py", "the first choice is the default");
    let folder = super::common::folder_with(&[("train.ipynb", "{}"), ("predict.py", "")]);
    assert_eq!(train.command_for(folder.path()), "takehome-notebook train.ipynb");
    assert_eq!(task.steps[1].command_for(folder.path()), "python predict.py");
    // Neither file: the first choice (which then fails, saying the script is missing).
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(train.command_for(empty.path()), "python train.py");
    // A link named train.py is not taken for the script (nor followed).
    let linked = super::common::folder_with(&[("train.ipynb", "{}")]);
    std::os::unix::fs::symlink("/etc/passwd", linked.path().join("train.py")).unwrap();
    assert_eq!(train.command_for(linked.path()), "takehome-notebook train.ipynb");

    // Nor a file reached through a linked folder: `src` -> a folder that holds train.py.
    let text = std::fs::read_to_string(repo_root().join("tasks/diamond-cut/task.yaml")).unwrap().replace("when: train.py", "when: src/train.py");
    let nested = takehome::task::parse(&text, &repo_root().join("tasks/diamond-cut")).unwrap();
    let elsewhere = super::common::folder_with(&[("train.py", "")]);
    let linked = super::common::folder_with(&[("train.ipynb", "{}")]);
    std::os::unix::fs::symlink(elsewhere.path(), linked.path().join("src")).unwrap();
    assert_eq!(nested.steps[0].command_for(linked.path()), "takehome-notebook train.ipynb");
    let real = super::common::folder_with(&[("src/train.py", ""), ("train.ipynb", "{}")]);
    assert_eq!(nested.steps[0].command_for(real.path()), "python train.py");

    // Bad choices are named by field.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo_root().join("tasks/diamond-cut/task.yaml")).unwrap().replace(
        "- { when: predict.ipynb, run: takehome-notebook predict.ipynb }",
        "- { when: ../predict.ipynb, run: takehome-notebook x }\n      - { when: predict.py }",
    );
    let problems = takehome::task::parse(&text, dir.path()).expect_err("bad choices are refused");
    let said: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert!(said.iter().any(|p| p.contains("steps[1].run[1].when") && p.contains("relative path")), "{said:?}");
    assert!(said.iter().any(|p| p.contains("steps[1].run[2].run") && p.contains("missing")), "{said:?}");
}

#[test]
fn an_r_script_runs_in_the_r_image_and_a_choice_names_only_a_known_image() {
    let task = takehome::task::load(&repo_root().join("tasks/penguins-pipeline")).unwrap();
    assert_eq!(task.images(), ["python", "r"], "its own, then its run choices'");
    assert!(task.extended_images.is_empty(), "python has the deep learning stack itself");
    assert_eq!(task.r_image(), Some("r"));
    let folder = super::common::folder_with(&[("clean.R", ""), ("train.py", ""), ("predict.R", "")]);
    let commands: Vec<(&str, Option<&str>)> = task.steps.iter().map(|s| (s.command_for(folder.path()), s.image_for(folder.path()))).collect();
    assert_eq!(commands, [("Rscript clean.R", Some("r")), ("python train.py", None), ("Rscript predict.R", Some("r"))]);

    // A notebook runs in the language its kernel speaks; R Markdown runs in the R image.
    let r_kernel = r#"{"cells": [], "metadata": {"kernelspec": {"name": "ir", "language": "R"}}, "nbformat": 4}"#;
    let python_kernel = r#"{"cells": [], "metadata": {"kernelspec": {"name": "python3", "language": "python"}}, "nbformat": 4}"#;
    let folder = super::common::folder_with(&[("clean.ipynb", r_kernel), ("train.ipynb", python_kernel), ("predict.Rmd", "```{r}\n```\n")]);
    let commands: Vec<(&str, Option<&str>)> = task.steps.iter().map(|s| (s.command_for(folder.path()), s.image_for(folder.path()))).collect();
    assert_eq!(
        commands,
        [("takehome-rnotebook clean.ipynb", Some("r")), ("takehome-notebook train.ipynb", None), ("takehome-rnotebook predict.Rmd", Some("r"))]
    );
    // A notebook that names no language is a Python one.
    let folder = super::common::folder_with(&[("clean.ipynb", "{}")]);
    assert_eq!(task.steps[0].command_for(folder.path()), "takehome-notebook clean.ipynb");

    // `language` is for notebooks only, and an entry after a catch-all for its file is refused.
    let text = std::fs::read_to_string(repo_root().join("tasks/penguins-pipeline/task.yaml"))
        .unwrap()
        .replace("{ when: clean.R, run: Rscript clean.R, image: r }", "{ when: clean.R, language: r, run: Rscript clean.R, image: r }")
        .replace(
            "{ when: train.ipynb, run: takehome-notebook train.ipynb }",
            "{ when: train.ipynb, run: takehome-notebook train.ipynb }\n      - { when: train.ipynb, language: julia, run: x }",
        );
    let problems = takehome::task::parse(&text, &repo_root().join("tasks/penguins-pipeline")).expect_err("bad languages are refused");
    let said: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert!(said.iter().any(|p| p.contains("steps[0].run[3].language") && p.contains("not a .ipynb file")), "{said:?}");
    assert!(said.iter().any(|p| p.contains("steps[1].run[3].when") && p.contains("chosen by an earlier entry")), "{said:?}");

    let text = std::fs::read_to_string(repo_root().join("tasks/penguins-pipeline/task.yaml"))
        .unwrap()
        .replace("{ when: clean.R, run: Rscript clean.R, image: r }", "{ when: clean.R, run: Rscript clean.R, image: no-such-image }")
        .replace("{ when: train.R, run: Rscript train.R, image: r }", "{ when: train.R, run: Rscript train.R, image: ../r }");
    let problems = takehome::task::parse(&text, &repo_root().join("tasks/penguins-pipeline")).expect_err("unknown images are refused");
    let said: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert!(said.iter().any(|p| p.contains("steps[0].run[3].image") && p.contains("no runner image \"no-such-image\"")), "{said:?}");
    assert!(said.iter().any(|p| p.contains("steps[1].run[3].image") && p.contains("not a valid image name")), "{said:?}");
}
