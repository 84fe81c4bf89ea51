//! The graph as a standalone SVG document: a top-to-bottom layout that follows the
//! nesting of the body (a sequence stacks, a branch or parallel group puts its arms side by
//! side between its open and close nodes, a loop or parallel group is a labelled box), so
//! the size grows linearly with the nodes. No scripts, no external references, every text
//! escaped. Each call-site node is a `<g class="node <status>">` with `data-step`,
//! `data-status`, `data-kind` and a `<title>`.

use std::collections::HashMap;
use std::fmt::Write;

use super::Graph;
use super::model::{Block, GroupKind, Node, NodeKind};

const MARGIN: f64 = 16.0;
const NODE_H: f64 = 36.0;
const DIAMOND_H: f64 = 44.0;
const DOT: f64 = 14.0;
const GAP: f64 = 30.0;
/// The space between a split's open node and its arms (and its arms and close node),
/// room for the arm labels below the bend.
const SPLIT_GAP: f64 = 46.0;
/// How far below a split's open node (or above its close node) the edges bend.
const BEND: f64 = 12.0;
const ARM_GAP: f64 = 24.0;
const EMPTY_ARM_W: f64 = 40.0;
const PAD: f64 = 12.0;
const GROUP_LABEL_H: f64 = 18.0;
const CHAR_W: f64 = 7.0;
const MAX_LABEL_CHARS: usize = 34;
/// Edge labels and group labels are cut shorter (the full text is in their `<title>`).
const MAX_SMALL_CHARS: usize = 28;
/// The width of a character of the 11 px labels.
const SMALL_CHAR_W: f64 = 6.2;

/// A box: width and height.
#[derive(Clone, Copy, Default)]
struct Size {
    w: f64,
    h: f64,
}

/// Where a node was put: its centre and size.
#[derive(Clone, Copy)]
struct Placed {
    cx: f64,
    cy: f64,
    w: f64,
    h: f64,
}

impl Placed {
    fn top(&self) -> f64 {
        self.cy - self.h / 2.0
    }
    fn bottom(&self) -> f64 {
        self.cy + self.h / 2.0
    }
}

struct Layout<'g> {
    nodes: &'g [Node],
    groups: &'g [super::model::Group],
    /// Sizes computed so far, by the block's address (each block is measured once).
    sizes: std::cell::RefCell<HashMap<usize, Size>>,
    placed: Vec<Option<Placed>>,
    /// Group boxes: group index, x, y, w, h.
    boxes: Vec<(usize, f64, f64, f64, f64)>,
    /// The column centre of each empty arm, by (open node, arm index).
    columns: HashMap<(usize, usize), f64>,
}

/// The text a node shows: its label (cut to fit) and its count when it ran more than once.
fn shown(node: &Node) -> String {
    let mut label = cut(&node.label, MAX_LABEL_CHARS);
    if node.count > 1 {
        let _ = write!(label, " ×{}", node.count);
    }
    label
}

/// `text` cut at `max` characters (ending in `…` when cut).
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

/// The width of a small label as drawn.
fn small_width(text: &str) -> f64 {
    cut(text, MAX_SMALL_CHARS).chars().count() as f64 * SMALL_CHAR_W
}

fn node_size(node: &Node) -> Size {
    let chars = shown(node).chars().count() as f64;
    let text_w = (chars * CHAR_W + 28.0).max(64.0);
    match node.kind {
        NodeKind::Merge => Size { w: DOT, h: DOT },
        NodeKind::Fork | NodeKind::Join => Size { w: 60.0, h: 6.0 },
        NodeKind::Decision => Size {
            w: text_w + 32.0,
            h: DIAMOND_H,
        },
        NodeKind::Hook | NodeKind::Llm | NodeKind::Agent => Size {
            w: text_w + 20.0,
            h: NODE_H,
        },
        _ => Size {
            w: text_w,
            h: NODE_H,
        },
    }
}

impl Layout<'_> {
    /// The size of `block`, measured once.
    fn size(&self, block: &Block) -> Size {
        let key = std::ptr::from_ref(block) as usize;
        if let Some(size) = self.sizes.borrow().get(&key) {
            return *size;
        }
        let size = self.measure(block);
        self.sizes.borrow_mut().insert(key, size);
        size
    }

    fn measure(&self, block: &Block) -> Size {
        match block {
            Block::Node(n) => node_size(&self.nodes[*n]),
            Block::Seq(blocks) => {
                let sizes: Vec<Size> = blocks
                    .iter()
                    .map(|b| self.size(b))
                    .filter(|s| s.h > 0.0)
                    .collect();
                let w = sizes.iter().map(|s| s.w).fold(0.0, f64::max);
                let h = sizes.iter().map(|s| s.h).sum::<f64>()
                    + GAP * sizes.len().saturating_sub(1) as f64;
                Size { w, h }
            }
            Block::Split { open, close, arms } => {
                let open = node_size(&self.nodes[*open]);
                let close = node_size(&self.nodes[*close]);
                let (arms_w, arms_h) = self.arms_size(arms);
                Size {
                    w: arms_w.max(open.w).max(close.w),
                    h: open.h + SPLIT_GAP + arms_h + SPLIT_GAP + close.h,
                }
            }
            Block::Group { group, inner } => {
                let inner = self.size(inner);
                // Room for the label left of the edge that runs down the middle.
                let label = self
                    .groups
                    .get(*group)
                    .map_or(0.0, |g| small_width(&g.label) + 2.0 * SMALL_CHAR_W);
                Size {
                    w: (inner.w + 2.0 * PAD).max(2.0 * (label + 12.0)),
                    h: inner.h + GROUP_LABEL_H + 2.0 * PAD,
                }
            }
        }
    }

    /// An arm's column: its content, or room for its edge, and for its label.
    fn arm_width(&self, label: Option<&str>, arm: &Block) -> f64 {
        let size = self.size(arm);
        let content = if size.h > 0.0 { size.w } else { EMPTY_ARM_W };
        content.max(label.map_or(0.0, |l| small_width(l) + 10.0))
    }

    fn arms_size(&self, arms: &[(Option<String>, Block)]) -> (f64, f64) {
        let w = arms
            .iter()
            .map(|(label, a)| self.arm_width(label.as_deref(), a))
            .sum::<f64>()
            + ARM_GAP * arms.len().saturating_sub(1) as f64;
        let h = arms.iter().map(|(_, a)| self.size(a).h).fold(0.0, f64::max);
        (w, h)
    }

    /// Places node `n` centred on `cx`, from `top` down.
    fn place_node(&mut self, n: usize, cx: f64, top: f64) {
        let size = node_size(&self.nodes[n]);
        self.placed[n] = Some(Placed {
            cx,
            cy: top + size.h / 2.0,
            w: size.w,
            h: size.h,
        });
    }

    /// Places `block` centred in the column `[left, left + width)`, from `top` down.
    fn place(&mut self, block: &Block, left: f64, width: f64, top: f64) {
        let cx = left + width / 2.0;
        match block {
            Block::Node(n) => self.place_node(*n, cx, top),
            Block::Seq(blocks) => {
                let mut y = top;
                for block in blocks {
                    let size = self.size(block);
                    if size.h <= 0.0 {
                        continue;
                    }
                    self.place(block, left, width, y);
                    y += size.h + GAP;
                }
            }
            Block::Split { open, close, arms } => {
                let total = self.size(block);
                let open_size = node_size(&self.nodes[*open]);
                self.place_node(*open, cx, top);
                let (arms_w, _) = self.arms_size(arms);
                let arms_top = top + open_size.h + SPLIT_GAP;
                let mut x = cx - arms_w / 2.0;
                for (index, (label, arm)) in arms.iter().enumerate() {
                    let w = self.arm_width(label.as_deref(), arm);
                    if self.size(arm).h > 0.0 {
                        self.place(arm, x, w, arms_top);
                    } else {
                        self.columns.insert((*open, index), x + w / 2.0);
                    }
                    x += w + ARM_GAP;
                }
                let close_size = node_size(&self.nodes[*close]);
                self.place_node(*close, cx, top + total.h - close_size.h);
            }
            Block::Group { group, inner } => {
                let size = self.size(block);
                let x = cx - size.w / 2.0;
                self.boxes.push((*group, x, top, size.w, size.h));
                let inner_w = size.w - 2.0 * PAD;
                self.place(inner, x + PAD, inner_w, top + PAD + GROUP_LABEL_H);
            }
        }
    }
}

/// Renders `graph` (see the module docs).
pub(crate) fn render(graph: &Graph) -> String {
    let mut layout = Layout {
        nodes: &graph.nodes,
        groups: &graph.groups,
        sizes: std::cell::RefCell::new(HashMap::new()),
        placed: vec![None; graph.nodes.len()],
        boxes: Vec::new(),
        columns: HashMap::new(),
    };
    let size = layout.size(&graph.tree);
    layout.place(&graph.tree, MARGIN, size.w, MARGIN);
    let width = (size.w + 2.0 * MARGIN).ceil();
    let height = (size.h + 2.0 * MARGIN).ceil();

    let mut out = String::new();
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"reprise-graph\" data-workflow=\"{}\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"ui-sans-serif, system-ui, sans-serif\" font-size=\"12\">",
        escape(&graph.slug)
    );
    let _ = write!(out, "<title>{}</title>", escape(&title(graph)));
    out.push_str("<defs><marker id=\"reprise-graph-arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#6b7280\"/></marker></defs>");

    for &(group, x, y, w, h) in &layout.boxes {
        let Some(g) = graph.groups.get(group) else {
            continue;
        };
        let (kind, dash) = match g.kind {
            GroupKind::Loop => ("loop", "6 3"),
            GroupKind::Parallel => ("parallel", "2 3"),
        };
        let mark = match g.kind {
            GroupKind::Loop => "↻ ",
            GroupKind::Parallel => "⇉ ",
        };
        let _ = write!(
            out,
            "<g class=\"group {kind}\" data-group=\"{}\"><title>{}</title><rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" rx=\"6\" fill=\"#f9fafb\" fill-opacity=\"0.6\" stroke=\"#9ca3af\" stroke-dasharray=\"{dash}\"/><text x=\"{:.1}\" y=\"{:.1}\" fill=\"#4b5563\" font-size=\"11\">{}</text></g>",
            escape(&g.id),
            escape(&g.label),
            x + 6.0,
            y + 14.0,
            escape(&format!("{mark}{}", cut(&g.label, MAX_SMALL_CHARS)))
        );
    }

    let mut edges = String::new();
    let mut labels = String::new();
    graph.tree.connections(&mut |c| {
        let (Some(from), Some(to)) = (layout.placed[c.from], layout.placed[c.to]) else {
            return;
        };
        let (x1, y1, x2, y2) = (from.cx, from.bottom(), to.cx, to.top());
        let from_kind = graph.nodes[c.from].kind;
        let to_kind = graph.nodes[c.to].kind;
        let splits = matches!(from_kind, NodeKind::Decision | NodeKind::Fork);
        let mut points = vec![(x1, y1)];
        let mut label_at = (x2, y1 + BEND + 14.0);
        if let Some(column) = c.empty_arm.and_then(|key| layout.columns.get(&key)).copied() {
            let upper = y1 + BEND;
            let lower = y2 - BEND;
            points.extend([(x1, upper), (column, upper), (column, lower), (x2, lower)]);
            label_at = (column, upper + 14.0);
        } else if (x1 - x2).abs() > 0.5 {
            let bend = if splits {
                y1 + BEND
            } else if matches!(to_kind, NodeKind::Merge | NodeKind::Join) {
                y2 - BEND
            } else {
                y2 - GAP / 2.0
            };
            points.extend([(x1, bend), (x2, bend)]);
        }
        points.push((x2, y2));
        let d: Vec<String> = points
            .iter()
            .enumerate()
            .map(|(i, (x, y))| format!("{}{x:.1},{y:.1}", if i == 0 { 'M' } else { 'L' }))
            .collect();
        let _ = write!(
            edges,
            "<path class=\"edge\" data-from=\"{}\" data-to=\"{}\" d=\"{}\" fill=\"none\" stroke=\"#6b7280\" stroke-width=\"1.2\" marker-end=\"url(#reprise-graph-arrow)\"/>",
            escape(&graph.nodes[c.from].id),
            escape(&graph.nodes[c.to].id),
            d.join(" ")
        );
        if let Some(label) = c.label {
            // A white halo keeps the label readable over the edge it sits on.
            let _ = write!(
                labels,
                "<text class=\"edge-label\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#374151\" font-size=\"11\" stroke=\"#ffffff\" stroke-width=\"4\" paint-order=\"stroke\"><title>{}</title>{}</text>",
                label_at.0,
                label_at.1,
                escape(label),
                escape(&cut(label, MAX_SMALL_CHARS))
            );
        }
    });
    out.push_str(&edges);
    out.push_str(&labels);

    for (node, placed) in graph.nodes.iter().zip(&layout.placed) {
        if let Some(placed) = placed {
            write_node(&mut out, node, *placed, graph.lit);
        }
    }
    out.push_str("</svg>");
    out
}

/// The document's title: the workflow, and whether it is lit.
fn title(graph: &Graph) -> String {
    match &graph.run_id {
        Some(run) => format!("workflow {} lit by run {run}", graph.slug),
        None => format!("workflow {}", graph.slug),
    }
}

fn write_node(out: &mut String, node: &Node, p: Placed, lit: bool) {
    let (fill, stroke) = match node.status {
        Some(status) => status.colours(),
        None if matches!(node.kind, NodeKind::Start | NodeKind::End) => ("#e5e7eb", "#374151"),
        None => ("#ffffff", "#374151"),
    };
    let (fill, stroke) = match node.kind {
        NodeKind::Merge | NodeKind::Fork | NodeKind::Join => ("#6b7280", "#6b7280"),
        NodeKind::Decision if !lit => ("#f9fafb", "#374151"),
        NodeKind::Decision => ("#f9fafb", "#6b7280"),
        _ => (fill, stroke),
    };
    let mut class = String::from("node");
    if let Some(status) = node.status {
        class.push(' ');
        class.push_str(status.as_str());
    }
    let _ = write!(
        out,
        "<g class=\"{class}\" data-node=\"{}\" data-kind=\"{}\"",
        escape(&node.id),
        node.kind.as_str()
    );
    if let Some(step) = &node.step {
        let _ = write!(out, " data-step=\"{}\"", escape(step));
    }
    if let Some(status) = node.status {
        let _ = write!(out, " data-status=\"{}\"", status.as_str());
    }
    if node.kind.is_site() && lit {
        let _ = write!(out, " data-count=\"{}\"", node.count);
    }
    if let Some(workflow) = &node.workflow {
        let _ = write!(out, " data-workflow=\"{}\"", escape(workflow));
    }
    out.push('>');
    let _ = write!(out, "<title>{}</title>", escape(&node_title(node)));
    let (x, y, w, h) = (p.cx - p.w / 2.0, p.cy - p.h / 2.0, p.w, p.h);
    let style = format!("fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"1.5\"");
    match node.kind {
        NodeKind::Start | NodeKind::End | NodeKind::Sleep => {
            let _ = write!(
                out,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" rx=\"{:.1}\" {style}/>",
                h / 2.0
            );
        }
        NodeKind::Action => {
            let _ = write!(
                out,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" rx=\"4\" {style}/>"
            );
        }
        NodeKind::Workflow => {
            let _ = write!(
                out,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" rx=\"2\" {style}/><path d=\"M{:.1},{y:.1} V{:.1} M{:.1},{y:.1} V{:.1}\" stroke=\"{stroke}\" stroke-width=\"1.2\"/>",
                x + 7.0,
                y + h,
                x + w - 7.0,
                y + h
            );
        }
        NodeKind::Hook => {
            let points = [
                (x + 10.0, y),
                (x + w - 10.0, y),
                (x + w, p.cy),
                (x + w - 10.0, y + h),
                (x + 10.0, y + h),
                (x, p.cy),
            ];
            let _ = write!(out, "<polygon points=\"{}\" {style}/>", polygon(&points));
        }
        NodeKind::Llm | NodeKind::Agent => {
            let points = [(x + 10.0, y), (x + w, y), (x + w - 10.0, y + h), (x, y + h)];
            let _ = write!(out, "<polygon points=\"{}\" {style}/>", polygon(&points));
        }
        NodeKind::Decision => {
            let points = [(p.cx, y), (x + w, p.cy), (p.cx, y + h), (x, p.cy)];
            let _ = write!(out, "<polygon points=\"{}\" {style}/>", polygon(&points));
        }
        NodeKind::Merge => {
            let _ = write!(
                out,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"{:.1}\" {style}/>",
                p.cx,
                p.cy,
                DOT / 2.0 - 1.0
            );
        }
        NodeKind::Fork | NodeKind::Join => {
            let _ = write!(
                out,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" rx=\"2\" {style}/>"
            );
        }
    }
    if !matches!(node.kind, NodeKind::Merge | NodeKind::Fork | NodeKind::Join) {
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#111827\">{}</text>",
            p.cx,
            p.cy + 4.0,
            escape(&shown(node))
        );
    }
    out.push_str("</g>");
}

/// A node's tooltip: what it is, where, and how far it got.
fn node_title(node: &Node) -> String {
    let mut title = node.label.clone();
    if let Some(callee) = &node.callee {
        let _ = write!(title, " ({} `{callee}`", node.kind.as_str());
        if let Some(line) = node.line {
            let _ = write!(title, ", line {line}");
        }
        title.push(')');
    } else {
        let _ = write!(title, " ({})", node.kind.as_str());
    }
    if let Some(status) = node.status {
        let _ = write!(title, ": {}", status.as_str().replace('_', " "));
        if node.count > 1 {
            let _ = write!(title, ", ran {} times", node.count);
        }
    }
    title
}

fn polygon(points: &[(f64, f64)]) -> String {
    let parts: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect();
    parts.join(" ")
}

/// Text safe in SVG text and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}
