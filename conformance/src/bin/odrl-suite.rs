//! `odrl-suite [FOLDER...]`: runs every ODRL test case of each folder (default: the shared
//! suite), prints one line per case and `N passed, M failed`; exits non-zero on failures.

use std::path::PathBuf;
use std::process::ExitCode;

use sluis_conformance::odrl;

fn main() -> ExitCode {
    let mut folders: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    if folders.is_empty() {
        folders.push(odrl::shared_suite());
    }
    let (mut passed, mut failed) = (0usize, 0usize);
    for folder in &folders {
        let results = match odrl::run_folder(folder) {
            Ok(r) => r,
            Err(e) => {
                println!("FAIL {}: {e:#}", folder.display());
                failed += 1;
                continue;
            }
        };
        for r in results {
            if r.differences.is_empty() {
                passed += 1;
                println!("ok   {}", r.name);
            } else {
                failed += 1;
                println!("FAIL {}: {}", r.name, r.differences.join("; "));
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
