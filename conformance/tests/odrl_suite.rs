//! Every shared ODRL test case and every case of our own passes.

use sluis_conformance::odrl;

fn assert_all_pass(folder: std::path::PathBuf) -> usize {
    let results = odrl::run_folder(&folder).expect("suite folder loads");
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.differences.is_empty())
        .map(|r| format!("{}: {}", r.name, r.differences.join("; ")))
        .collect();
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    results.len()
}

#[test]
fn shared_suite_passes() {
    assert_eq!(assert_all_pass(odrl::shared_suite()), 46);
}

#[test]
fn own_cases_pass() {
    assert!(assert_all_pass(odrl::own_cases()) >= 40);
}
