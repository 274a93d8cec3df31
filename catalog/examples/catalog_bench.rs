//! Catalogue benchmark: 100,000 datasets. See `catalog/BENCHMARKS.md` for how to run it.
//!
//! `bench [N]` builds N datasets through `put_dataset`, dumps them to N-Quads, then runs
//! `bench load <dump>` in a fresh process so load time and resident memory are measured clean.
//! Built with `--features rocksdb`, it then bulk-loads the same dump into oxigraph's disk store
//! and runs `bench open <dir>` in a fresh process: the disk-backed catalogue beside the
//! in-memory baseline, in one run.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluis_catalog::{
    CatalogFilter, CatalogStore, DataSource, Dataset, Distribution, Page, RdfSyntax, ServiceInfo,
    SparqlLimits, SparqlResultsSyntax,
};

fn dataset(i: usize) -> Dataset {
    Dataset {
        id: format!("urn:sluis:dataset:{i:06}"),
        title: format!("Meter readings district {i}"),
        description: Some(format!("Quarter-hour smart meter readings of district {i}")),
        keywords: vec![
            "energy".into(),
            if i.is_multiple_of(2) { "even" } else { "odd" }.into(),
        ],
        themes: vec!["http://publications.europa.eu/resource/authority/data-theme/ENER".into()],
        publisher: Some("did:web:provider.example".into()),
        publisher_name: Some("Provider BV".into()),
        issued: Some("2026-01-15".into()),
        distributions: vec![Distribution {
            id: None,
            format: "ArrowFlight-PULL".into(),
            access_service: None,
            source: Some(DataSource {
                kind: "parquet".into(),
                location: format!("/data/meter/{i}.parquet"),
            }),
        }],
        offers: vec![
            json!({"@id": format!("urn:sluis:offer:{i:06}"), "@type": "Offer", "profile": "https://w3id.org/sluis/odrl",
            "permission": [{"action": "use", "constraint": [
                {"leftOperand": "sluis:row.region", "operator": "eq", "rightOperand": "north"},
                {"leftOperand": "sluis:column", "operator": "isNoneOf", "rightOperand": ["customer_name"]}]}]}),
        ],
        ..Dataset::default()
    }
}

fn svc() -> ServiceInfo {
    ServiceInfo {
        catalog_id: "urn:sluis:catalog:bench".into(),
        participant_id: "did:web:provider.example".into(),
        service_id: "urn:sluis:service:bench".into(),
        endpoint_url: "https://provider.example/dsp".into(),
    }
}

/// (p50, p95) of `runs` timings of `f`, in milliseconds.
fn percentiles(runs: usize, mut f: impl FnMut(usize)) -> (f64, f64) {
    let mut t: Vec<Duration> = (0..runs)
        .map(|i| {
            let s = Instant::now();
            f(i);
            s.elapsed()
        })
        .collect();
    t.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (ms(t[runs / 2]), ms(t[runs * 95 / 100]))
}

fn status(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .map(|l| l[field.len()..].trim().to_string())
        .unwrap_or_default()
}

fn build(n: usize, dump_path: &std::path::Path) {
    let cat = CatalogStore::new().unwrap();
    let start = Instant::now();
    for i in 0..n {
        cat.put_dataset(&dataset(i)).unwrap();
    }
    let put = start.elapsed();
    println!(
        "put_dataset x{n}: {:.2} s = {:.0} datasets/s",
        put.as_secs_f64(),
        n as f64 / put.as_secs_f64()
    );
    println!("quads: {}", cat.oxigraph().len().unwrap());

    // Turtle import of 10,000 datasets into a fresh store (parse + split + one transaction).
    let sample = CatalogStore::new().unwrap();
    for i in 0..10_000 {
        sample.put_dataset(&dataset(i)).unwrap();
    }
    let ttl = sample.export(RdfSyntax::Turtle, None).unwrap();
    drop(sample);
    let fresh = CatalogStore::new().unwrap();
    let start = Instant::now();
    let report = fresh.import(&ttl, RdfSyntax::Turtle).unwrap();
    let imp = start.elapsed();
    println!(
        "Turtle import of {} datasets ({} MB): {:.2} s = {:.0} datasets/s",
        report.datasets.len(),
        ttl.len() / 1_000_000,
        imp.as_secs_f64(),
        report.datasets.len() as f64 / imp.as_secs_f64()
    );
    drop(fresh);

    let start = Instant::now();
    let dump = cat.dump().unwrap();
    println!(
        "dump: {} MB in {:.2} s",
        dump.len() / 1_000_000,
        start.elapsed().as_secs_f64()
    );
    std::fs::write(dump_path, dump).unwrap();
}

fn load_and_query(dump_path: &std::path::Path) {
    let bytes = std::fs::read(dump_path).unwrap();
    let start = Instant::now();
    let cat = CatalogStore::load(&bytes).unwrap();
    let load = start.elapsed();
    drop(bytes);
    let n = cat.len().unwrap();
    println!("load from dump ({n} datasets): {:.2} s", load.as_secs_f64());
    println!(
        "resident memory after load: {} (peak {})",
        status("VmRSS:"),
        status("VmHWM:")
    );
    query(&cat, n);
}

/// The connector's set-up: offers with an `assignee` are the scoped ones, found through the
/// `odrl:assignee` index; 100 such datasets are added, half of them for another participant.
fn scoped_pages(cat: &CatalogStore, n: usize) {
    cat.set_scope_marker(std::sync::Arc::new(|o: &Value| o.get("assignee").is_some()))
        .unwrap();
    cat.set_scope_property("http://www.w3.org/ns/odrl/2/assignee")
        .unwrap();
    for i in n..n + 100 {
        let mut ds = dataset(i);
        let who = if i % 2 == 0 {
            "did:web:me"
        } else {
            "did:web:other"
        };
        ds.offers[0]["assignee"] = json!(who);
        cat.put_dataset(&ds).unwrap();
    }
    let me = |o: &Value| o.get("assignee").is_none_or(|a| a == "did:web:me");
    let (s, first_page, none) = (
        svc(),
        Page {
            offset: 0,
            limit: 50,
        },
        CatalogFilter::default(),
    );
    let start = Instant::now();
    let page = cat.dsp_catalog_for(&s, first_page, &none, &me).unwrap();
    assert_eq!(page.total, n + 50);
    println!(
        "DSP catalog request as the connector makes it (caller's visibility, 100 scoped datasets), first: {:.1} ms",
        start.elapsed().as_secs_f64() * 1000.0
    );
    let (p50, p95) = percentiles(200, |_| {
        cat.dsp_catalog_for(&s, first_page, &none, &me).unwrap();
    });
    println!("same, warm: p50 {p50:.2} ms, p95 {p95:.2} ms");
    for i in n..n + 100 {
        cat.remove_dataset(&format!("urn:sluis:dataset:{i:06}"))
            .unwrap();
    }
}

fn query(cat: &CatalogStore, n: usize) {
    let s = svc();
    let (p50, p95) = percentiles(200, |_| {
        let page = cat
            .dsp_catalog(
                &s,
                Page {
                    offset: 0,
                    limit: 50,
                },
            )
            .unwrap();
        assert_eq!(page.total, n);
    });
    println!(
        "DSP catalog request, first page of 50, everyone sees all: p50 {p50:.2} ms, p95 {p95:.2} ms"
    );
    let (p50, p95) = percentiles(200, |i| {
        cat.dsp_catalog(
            &s,
            Page {
                offset: (i * 997) % n,
                limit: 50,
            },
        )
        .unwrap();
    });
    println!(
        "DSP catalog request, a page of 50 at a random offset: p50 {p50:.2} ms, p95 {p95:.2} ms"
    );
    let visible = |o: &Value| o["@id"].as_str().is_some_and(|id| !id.ends_with('7'));
    let first_page = Page {
        offset: 0,
        limit: 50,
    };
    let none = CatalogFilter::default();
    let start = Instant::now();
    cat.dsp_catalog_for(&s, first_page, &none, &visible)
        .unwrap();
    println!(
        "DSP catalog request with a visibility predicate, first after load (fills the summary cache): {:.0} ms",
        start.elapsed().as_secs_f64() * 1000.0
    );
    let (p50, p95) = percentiles(5, |_| {
        cat.dsp_catalog_for(&s, first_page, &none, &visible)
            .unwrap();
    });
    println!(
        "DSP catalog request with a visibility predicate (every offer checked to count): p50 {p50:.0} ms, p95 {p95:.0} ms"
    );
    // With a scope marker that marks one offer in ten as carrying catalogue-scope constraints.
    cat.set_scope_marker(std::sync::Arc::new(|o: &Value| {
        o["@id"].as_str().is_some_and(|id| id.ends_with('3'))
    }))
    .unwrap();
    let start = Instant::now();
    cat.dsp_catalog_for(&s, first_page, &none, &visible)
        .unwrap();
    println!(
        "same, with a scope marker marking 1 offer in 10, first (refills summaries): {:.0} ms",
        start.elapsed().as_secs_f64() * 1000.0
    );
    let (p50, p95) = percentiles(20, |_| {
        cat.dsp_catalog_for(&s, first_page, &none, &visible)
            .unwrap();
    });
    println!("same, with the scope marker, warm: p50 {p50:.1} ms, p95 {p95:.1} ms");
    scoped_pages(cat, n);
    let filter = CatalogFilter::parse(&json!([{"keyword": "odd"}])).unwrap();
    let (p50, _) = percentiles(5, |_| {
        cat.dsp_catalog_for(&s, first_page, &filter, &sluis_catalog::visible_to_all)
            .unwrap();
    });
    println!("DSP catalog request with a keyword filter: p50 {p50:.0} ms");
    let (p50, p95) = percentiles(1000, |i| {
        cat.dsp_dataset(&format!("urn:sluis:dataset:{:06}", (i * 7919) % n), &s)
            .unwrap()
            .unwrap();
    });
    println!("DSP dataset lookup: p50 {p50:.3} ms, p95 {p95:.3} ms");
    let (p50, p95) = percentiles(1000, |i| {
        cat.find_offer(&format!("urn:sluis:offer:{:06}", (i * 7919) % n))
            .unwrap()
            .unwrap();
    });
    println!("find_offer: p50 {p50:.3} ms, p95 {p95:.3} ms");
    let q = "PREFIX dcat: <http://www.w3.org/ns/dcat#> PREFIX dct: <http://purl.org/dc/terms/>
             SELECT ?d ?t WHERE { ?d dcat:keyword \"odd\" ; dct:title ?t } LIMIT 100";
    let (p50, p95) = percentiles(20, |_| {
        cat.sparql_query(q, SparqlResultsSyntax::Json, SparqlLimits::default())
            .unwrap();
    });
    println!("SPARQL keyword lookup, LIMIT 100: p50 {p50:.2} ms, p95 {p95:.2} ms");
    let q = "PREFIX dcat: <http://www.w3.org/ns/dcat#> SELECT (COUNT(?d) AS ?n) WHERE { ?d a dcat:Dataset ; dcat:keyword \"odd\" }";
    let (p50, _) = percentiles(5, |_| {
        cat.sparql_query(q, SparqlResultsSyntax::Json, SparqlLimits::default())
            .unwrap();
    });
    println!("SPARQL count of datasets by keyword (full scan): p50 {p50:.0} ms");
    let (p50, _) = percentiles(5, |_| {
        cat.search("district 4242", 10).unwrap();
    });
    println!("search (substring over titles, descriptions, keywords): p50 {p50:.0} ms");
    println!(
        "resident memory at end: {} (peak {})",
        status("VmRSS:"),
        status("VmHWM:")
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("dump") {
        build(args[2].parse().unwrap(), std::path::Path::new(&args[3]));
        return;
    }
    if args.get(1).map(String::as_str) == Some("probe") {
        probe(std::path::Path::new(&args[2]));
        return;
    }
    if args.get(1).map(String::as_str) == Some("load") {
        load_and_query(std::path::Path::new(&args[2]));
        return;
    }
    #[cfg(feature = "rocksdb")]
    if args.get(1).map(String::as_str) == Some("open") {
        disk::open_and_query(std::path::Path::new(&args[2]));
        return;
    }
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let dir = std::env::temp_dir().join(format!("sluis-catalog-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dump = dir.join("catalog.nq");
    build(n, &dump);
    println!(
        "build-phase memory: {} (peak {})",
        status("VmRSS:"),
        status("VmHWM:")
    );
    run_self(&["load".as_ref(), dump.as_os_str()]);
    #[cfg(feature = "rocksdb")]
    {
        let store_dir = dir.join("catalog.oxigraph");
        disk::bulk_load(&dump, &store_dir);
        run_self(&["open".as_ref(), store_dir.as_os_str()]);
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Runs this benchmark again in a fresh process (clean memory figures).
fn run_self(args: &[&std::ffi::OsStr]) {
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(args)
        .status()
        .unwrap();
    assert!(status.success());
}

#[cfg(feature = "rocksdb")]
mod disk {
    use super::*;

    /// Loads the dump into a new disk store with oxigraph's bulk loader.
    pub fn bulk_load(dump: &std::path::Path, dir: &std::path::Path) {
        let bytes = std::fs::read(dump).unwrap();
        let start = Instant::now();
        let store = oxigraph::store::Store::open(dir).unwrap();
        let mut loader = store.bulk_loader();
        loader
            .load_from_slice(oxigraph::io::RdfFormat::NQuads, &bytes)
            .unwrap();
        loader.commit().unwrap();
        store.flush().unwrap();
        println!(
            "disk store: bulk load of the dump ({} MB): {:.2} s",
            bytes.len() / 1_000_000,
            start.elapsed().as_secs_f64()
        );
    }

    /// Opens the disk store in a fresh process and runs the same queries.
    pub fn open_and_query(dir: &std::path::Path) {
        let start = Instant::now();
        let cat = CatalogStore::open(dir).unwrap();
        let n = cat.len().unwrap();
        println!(
            "disk store: open ({n} datasets): {:.2} s",
            start.elapsed().as_secs_f64()
        );
        println!(
            "disk store: resident memory after open: {} (peak {})",
            status("VmRSS:"),
            status("VmHWM:")
        );
        query(&cat, n);
    }
}

/// Where load time goes: parsing alone, then inserting already-parsed quads.
fn probe(dump_path: &std::path::Path) {
    use oxigraph::io::{RdfFormat, RdfParser};
    let bytes = std::fs::read(dump_path).unwrap();
    let start = Instant::now();
    let quads: Vec<oxigraph::model::Quad> = RdfParser::from_format(RdfFormat::NQuads)
        .for_slice(&bytes)
        .collect::<Result<_, _>>()
        .unwrap();
    println!(
        "parse {} quads: {:.2} s",
        quads.len(),
        start.elapsed().as_secs_f64()
    );
    let store = oxigraph::store::Store::new().unwrap();
    let start = Instant::now();
    let mut loader = store.bulk_loader();
    loader.load_quads(quads.iter().cloned()).unwrap();
    loader.commit().unwrap();
    println!("bulk insert: {:.2} s", start.elapsed().as_secs_f64());
    let store2 = oxigraph::store::Store::new().unwrap();
    let start = Instant::now();
    store2.extend(quads.iter().cloned()).unwrap();
    println!("extend: {:.2} s", start.elapsed().as_secs_f64());
    drop(quads);
    drop(store2);
    drop(store);
    let store3 = oxigraph::store::Store::new().unwrap();
    let start = Instant::now();
    store3.load_from_slice(RdfFormat::NQuads, &bytes).unwrap();
    println!(
        "Store::load_from_slice (parse + insert): {:.2} s",
        start.elapsed().as_secs_f64()
    );
    drop(store3);
    let start = Instant::now();
    let cat = CatalogStore::load(&bytes).unwrap();
    println!("CatalogStore::load: {:.2} s", start.elapsed().as_secs_f64());
    drop(cat);
    println!("rss with one store: {}", status("VmRSS:"));
}
