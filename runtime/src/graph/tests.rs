//! The graph at scale: a body of 1,000 sites in loops, branches and parallel groups
//! draws every node once, with a size that grows linearly (the SVG does not explode).

use futures::future::BoxFuture;

use super::{Graph, shape};
use crate::registry::{Registration, Registry};
use crate::step::{ActionOptions, Shape, ShapeArm, Site, SiteKind, Step, StepBehavior};
use crate::{ActionCtx, ActionError};

/// An action the synthetic sites call.
struct Big;

fn big(input: u32, _cx: ActionCtx) -> BoxFuture<'static, Result<u32, ActionError>> {
    Box::pin(async move { Ok(input) })
}

impl Step for Big {
    type Input = u32;
    type Output = u32;
    const SLUG: &'static str = "big";
    const DESCRIPTION: &'static str = "";
    const BEHAVIOR: StepBehavior<u32, u32> = StepBehavior::Action {
        options: ActionOptions::DEFAULT,
        call: big,
    };
}

fn leak<T>(items: Vec<T>) -> &'static [T] {
    Box::leak(items.into_boxed_slice())
}

/// `blocks` repetitions of: a site, a loop over a site, an `if` with two arms of a site
/// each plus an empty `else`, a `join!` of three sites, a `match` over two sites: 8
/// sites each.
fn synthetic(blocks: usize) -> Graph {
    let mut sites = Vec::new();
    let mut site = || {
        sites.push(Site {
            kind: SiteKind::Run,
            callee: "big",
            ordinal: u32::try_from(sites.len() + 1).unwrap_or(u32::MAX),
            pinned: None,
            line: 1,
        });
        Shape::Site(sites.len() - 1)
    };
    let mut body = Vec::new();
    for _ in 0..blocks {
        body.push(site());
        body.push(Shape::Loop {
            label: "for item in items",
            body: leak(vec![site()]),
        });
        body.push(Shape::Branch {
            label: "if",
            arms: leak(vec![
                ShapeArm {
                    label: "x > 1",
                    body: leak(vec![site()]),
                },
                ShapeArm {
                    label: "x < 0",
                    body: leak(vec![site()]),
                },
                ShapeArm {
                    label: "else",
                    body: &[],
                },
            ]),
        });
        body.push(Shape::Parallel {
            label: "join!",
            branches: leak(vec![
                leak(vec![site()]),
                leak(vec![site()]),
                leak(vec![site()]),
            ]),
        });
        body.push(Shape::Branch {
            label: "match kind",
            arms: leak(vec![
                ShapeArm {
                    label: "Kind::A",
                    body: leak(vec![site()]),
                },
                ShapeArm {
                    label: "_",
                    body: &[],
                },
            ]),
        });
    }
    let registration = Registration::of::<Big>("big");
    let (nodes, groups, tree) =
        shape::build_from(&Registry::default(), &registration, &sites, &body);
    Graph::assemble("synthetic", nodes, groups, tree)
}

fn dimension(svg: &str, name: &str) -> f64 {
    let start = svg.find(&format!(" {name}=\"")).map(|i| i + name.len() + 3);
    start
        .and_then(|start| {
            let end = svg[start..].find('"')? + start;
            svg[start..end].parse().ok()
        })
        .unwrap_or(f64::NAN)
}

#[test]
fn a_thousand_sites_draw_every_node_once_and_grow_linearly() {
    let small = synthetic(10);
    let large = synthetic(125);
    let sites = large.nodes.iter().filter(|n| n.site.is_some()).count();
    assert_eq!(sites, 1000);

    let svg = large.svg();
    assert_eq!(svg.matches("data-kind=\"action\"").count(), 1000);
    assert_eq!(svg.matches("class=\"group loop\"").count(), 125);
    assert_eq!(svg.matches("class=\"group parallel\"").count(), 125);
    assert_eq!(svg.matches("class=\"edge\"").count(), large.edges.len());
    let mermaid = large.mermaid();
    assert_eq!(mermaid.matches(" -->").count(), large.edges.len());

    // Height grows with the number of blocks.
    let (small_svg, large_svg) = (small.svg(), svg);
    let (small_h, large_h) = (
        dimension(&small_svg, "height"),
        dimension(&large_svg, "height"),
    );
    assert!(
        (large_h / small_h - 12.5).abs() < 0.5,
        "{small_h} → {large_h}"
    );
    // Width stays about that of one block (only the longer keys, `big@1000`, widen it).
    let (small_w, large_w) = (
        dimension(&small_svg, "width"),
        dimension(&large_svg, "width"),
    );
    assert!(large_w < small_w * 1.2, "{small_w} → {large_w}");
}

/// Not a test: `cargo test -p reprise --lib graph::tests::measure -- --ignored --nocapture`
/// prints how long a 1,000-site graph takes to build and draw.
#[test]
#[ignore = "a measurement, not a test"]
fn measure() {
    let started = std::time::Instant::now();
    let graph = synthetic(125);
    let built = started.elapsed();
    let svg = graph.svg();
    let drawn = started.elapsed() - built;
    let mermaid = graph.mermaid();
    let total = started.elapsed();
    println!(
        "1,000 sites ({} nodes, {} edges): built in {built:?}, SVG ({} bytes) in {drawn:?}, Mermaid ({} bytes) in {:?}",
        graph.nodes.len(),
        graph.edges.len(),
        svg.len(),
        mermaid.len(),
        total - built - drawn
    );
}
