//! JUnit XML, as CI systems read it: `exec --junit` and `verdict --junit`.

use serde::Serialize;

use s3chaos::verdict::{Status, Verdicts};

#[derive(Serialize)]
#[serde(rename = "testsuites")]
pub struct TestSuites {
    pub testsuite: TestSuite,
}

#[derive(Serialize)]
pub struct TestSuite {
    #[serde(rename = "@name")]
    pub name: String,
    #[serde(rename = "@tests")]
    pub tests: usize,
    #[serde(rename = "@failures")]
    pub failures: usize,
    #[serde(rename = "@skipped")]
    pub skipped: usize,
    pub testcase: Vec<TestCase>,
}

#[derive(Serialize)]
pub struct TestCase {
    #[serde(rename = "@name")]
    pub name: String,
    #[serde(rename = "@classname")]
    pub classname: String,
    #[serde(rename = "@time", skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<Skipped>,
    #[serde(rename = "system-out", skip_serializing_if = "Option::is_none")]
    pub system_out: Option<String>,
}

#[derive(Serialize)]
pub struct Skipped {
    #[serde(rename = "@message")]
    pub message: String,
}

#[derive(Serialize)]
pub struct Failure {
    #[serde(rename = "@message")]
    pub message: String,
}

/// One test case per expectation: a failure with its evidence, skipped when the drill gave
/// nothing to judge it on, passed (with what was seen as output) otherwise.
pub fn verdict_cases(classname: &str, verdicts: &Verdicts) -> Vec<TestCase> {
    verdicts
        .verdicts
        .iter()
        .map(|v| {
            let evidence = v.evidence.join("\n");
            TestCase {
                name: v.name(),
                classname: classname.to_owned(),
                time: None,
                failure: (v.status == Status::Fail).then(|| Failure {
                    message: format!("{}\n{evidence}", v.summary).trim_end().to_owned(),
                }),
                skipped: (v.status == Status::NotJudged).then(|| Skipped {
                    message: v.summary.clone(),
                }),
                system_out: matches!(v.status, Status::Pass | Status::Info)
                    .then(|| format!("{}: {}\n{evidence}", v.status, v.summary).trim_end().to_owned()),
            }
        })
        .collect()
}

/// One test suite of `cases`, as a JUnit XML document.
pub fn render(name: &str, cases: Vec<TestCase>) -> String {
    let suites = TestSuites {
        testsuite: TestSuite {
            name: name.to_owned(),
            tests: cases.len(),
            failures: cases.iter().filter(|c| c.failure.is_some()).count(),
            skipped: cases.iter().filter(|c| c.skipped.is_some()).count(),
            testcase: cases,
        },
    };
    let body = quick_xml::se::to_string(&suites).expect("the JUnit structs serialise");
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{body}\n")
}
