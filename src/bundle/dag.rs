//! The dependency graph of a bundle: duplicate ids, unknown dependencies and cycles found all at
//! once, and the levels it runs in (every workstream one level after its last dependency).
//! Everything is linear in workstreams + dependencies, iterative (no recursion to overflow on a
//! chain of thousands), and deterministic: ties keep the bundle's order.

use std::collections::{HashMap, VecDeque};

use super::Problem;
use super::spec::Workstream;

#[derive(Debug, Clone)]
pub struct Graph {
    pub ids: Vec<String>,
    /// `deps[i]`: the indices `i` depends on (deduplicated, known ones only).
    pub deps: Vec<Vec<usize>>,
    /// `dependents[i]`: the indices that depend on `i`.
    pub dependents: Vec<Vec<usize>>,
}

impl Graph {
    /// The graph of the first workstream of each id, with a problem for every duplicate id and
    /// every unknown dependency.
    pub fn new(workstreams: &[Workstream]) -> (Graph, Vec<Problem>) {
        let mut problems = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::with_capacity(workstreams.len());
        let mut ids = Vec::with_capacity(workstreams.len());
        let mut first_of: Vec<usize> = Vec::with_capacity(workstreams.len());
        for (i, w) in workstreams.iter().enumerate() {
            match index.get(w.id.as_str()) {
                Some(_) => problems.push(Problem::of(
                    &w.id,
                    format!("duplicate id: workstream {} of the bundle reuses it", i + 1),
                )),
                None => {
                    index.insert(&w.id, ids.len());
                    ids.push(w.id.clone());
                    first_of.push(i);
                }
            }
        }
        let mut deps = vec![Vec::new(); ids.len()];
        let mut dependents = vec![Vec::new(); ids.len()];
        for (node, &wi) in first_of.iter().enumerate() {
            let w = &workstreams[wi];
            for d in &w.depends_on {
                match index.get(d.as_str()) {
                    None => problems.push(Problem::of(
                        &w.id,
                        format!("depends on {d:?}, which is not a workstream of the bundle"),
                    )),
                    Some(&di) if !deps[node].contains(&di) => {
                        deps[node].push(di);
                        dependents[di].push(node);
                    }
                    Some(_) => {}
                }
            }
        }
        (
            Graph {
                ids,
                deps,
                dependents,
            },
            problems,
        )
    }

    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.ids.iter().position(|x| x == id)
    }

    /// Every cycle, one per strongly connected component, as a path of ids where each depends
    /// on the next: `a → b → a`.
    pub fn cycles(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        for component in self.components() {
            let start = component[0];
            let cyclic = component.len() > 1 || self.deps[start].contains(&start);
            if !cyclic {
                continue;
            }
            let path = self.cycle_through(start, &component);
            out.push(path.iter().map(|&i| self.ids[i].clone()).collect());
        }
        out
    }

    /// Shortest path from `start` back to itself inside one component (breadth first).
    fn cycle_through(&self, start: usize, component: &[usize]) -> Vec<usize> {
        let inside: std::collections::HashSet<usize> = component.iter().copied().collect();
        let mut prev: HashMap<usize, usize> = HashMap::new();
        let mut queue = VecDeque::from([start]);
        while let Some(n) = queue.pop_front() {
            for &d in &self.deps[n] {
                if d == start {
                    let mut path = vec![start];
                    let mut at = n;
                    while at != start {
                        path.push(at);
                        at = prev[&at];
                    }
                    path.push(start);
                    // Built backwards from the end: start, n, ..., first step, start.
                    let len = path.len();
                    path[1..len - 1].reverse();
                    return path;
                }
                if inside.contains(&d) && d != start && !prev.contains_key(&d) {
                    prev.insert(d, n);
                    queue.push_back(d);
                }
            }
        }
        vec![start, start]
    }

    /// Strongly connected components (Tarjan's algorithm, iteratively), each sorted, in the
    /// order of their smallest member.
    fn components(&self) -> Vec<Vec<usize>> {
        let n = self.ids.len();
        let mut index = vec![usize::MAX; n];
        let mut low = vec![0usize; n];
        let mut on_stack = vec![false; n];
        let mut stack = Vec::new();
        let mut next = 0usize;
        let mut out = Vec::new();
        for root in 0..n {
            if index[root] != usize::MAX {
                continue;
            }
            // (node, next edge to look at)
            let mut work = vec![(root, 0usize)];
            while let Some(&mut (v, ref mut edge)) = work.last_mut() {
                if *edge == 0 {
                    index[v] = next;
                    low[v] = next;
                    next += 1;
                    stack.push(v);
                    on_stack[v] = true;
                }
                if let Some(&w) = self.deps[v].get(*edge) {
                    *edge += 1;
                    if index[w] == usize::MAX {
                        work.push((w, 0));
                    } else if on_stack[w] {
                        low[v] = low[v].min(index[w]);
                    }
                    continue;
                }
                // All edges of v done.
                work.pop();
                if let Some(&(parent, _)) = work.last() {
                    low[parent] = low[parent].min(low[v]);
                }
                if low[v] == index[v] {
                    let mut comp = Vec::new();
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        comp.push(w);
                        if w == v {
                            break;
                        }
                    }
                    comp.sort_unstable();
                    out.push(comp);
                }
            }
        }
        out.sort_by_key(|c| c[0]);
        out
    }

    /// The levels of an acyclic graph: level 0 has no dependencies; a workstream is one level
    /// after its deepest dependency. Within a level, the bundle's order.
    pub fn levels(&self) -> Vec<Vec<usize>> {
        let n = self.ids.len();
        let mut remaining: Vec<usize> = self.deps.iter().map(Vec::len).collect();
        let mut level_of = vec![0usize; n];
        let mut current: Vec<usize> = (0..n).filter(|&i| remaining[i] == 0).collect();
        let mut levels = Vec::new();
        while !current.is_empty() {
            let mut next = Vec::new();
            for &v in &current {
                for &d in &self.dependents[v] {
                    level_of[d] = level_of[d].max(level_of[v] + 1);
                    remaining[d] -= 1;
                    if remaining[d] == 0 {
                        next.push(d);
                    }
                }
            }
            next.sort_unstable();
            levels.push(current);
            current = next;
        }
        levels
    }

    /// Everything that (transitively) depends on `i`.
    pub fn downstream(&self, i: usize) -> Vec<usize> {
        let mut seen = vec![false; self.ids.len()];
        let mut queue: VecDeque<usize> = self.dependents[i].iter().copied().collect();
        let mut out = Vec::new();
        while let Some(v) = queue.pop_front() {
            if std::mem::replace(&mut seen[v], true) {
                continue;
            }
            out.push(v);
            queue.extend(self.dependents[v].iter().copied());
        }
        out.sort_unstable();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws(id: &str, deps: &[&str]) -> Workstream {
        Workstream {
            id: id.to_owned(),
            task: format!("do {id}"),
            scope: Vec::new(),
            create: Vec::new(),
            depends_on: deps.iter().map(|s| (*s).to_owned()).collect(),
            risk: None,
            gates: None,
            allow_overlap: false,
        }
    }

    #[test]
    fn a_diamond_has_three_levels() {
        let (g, p) = Graph::new(&[
            ws("a", &[]),
            ws("b", &["a"]),
            ws("c", &["a"]),
            ws("d", &["b", "c"]),
        ]);
        assert!(p.is_empty());
        assert!(g.cycles().is_empty());
        assert_eq!(g.levels(), vec![vec![0], vec![1, 2], vec![3]]);
        assert_eq!(g.downstream(1), vec![3]);
        assert_eq!(g.downstream(0), vec![1, 2, 3]);
    }

    #[test]
    fn cycles_are_paths() {
        let (g, p) = Graph::new(&[
            ws("a", &["c"]),
            ws("b", &["a"]),
            ws("c", &["b"]),
            ws("d", &["d"]),
            ws("e", &[]),
        ]);
        assert!(p.is_empty());
        let c = g.cycles();
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c[0], ["a", "c", "b", "a"]);
        assert_eq!(c[1], ["d", "d"]);
    }

    #[test]
    fn duplicates_and_unknown_dependencies_are_named() {
        let (_, p) = Graph::new(&[ws("a", &["x"]), ws("a", &[])]);
        assert_eq!(p.len(), 2);
        assert!(p[0].message.contains("duplicate id"), "{:?}", p);
        assert!(p[1].message.contains("\"x\""), "{:?}", p);
    }

    #[test]
    fn a_long_chain_does_not_overflow() {
        let n = 20_000;
        let list: Vec<Workstream> = (0..n)
            .map(|i| {
                let prev = if i == 0 {
                    Vec::new()
                } else {
                    vec![format!("w{}", i - 1)]
                };
                Workstream {
                    depends_on: prev,
                    ..ws(&format!("w{i}"), &[])
                }
            })
            .collect();
        let (g, _) = Graph::new(&list);
        assert!(g.cycles().is_empty());
        assert_eq!(g.levels().len(), n);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn graph() -> impl Strategy<Value = Vec<Workstream>> {
            (1usize..40).prop_flat_map(|n| {
                proptest::collection::vec(proptest::collection::vec(0..n, 0..4), n).prop_map(
                    move |edges| {
                        edges
                            .iter()
                            .enumerate()
                            .map(|(i, deps)| {
                                let names: Vec<String> =
                                    deps.iter().map(|d| format!("w{d}")).collect();
                                Workstream {
                                    depends_on: names,
                                    ..ws(&format!("w{i}"), &[])
                                }
                            })
                            .collect()
                    },
                )
            })
        }

        proptest! {
            /// A graph has no cycle exactly when its levels hold every workstream; every level
            /// comes after all of its members' dependencies; every cycle reported is a real one.
            #[test]
            fn levels_and_cycles_agree(list in graph()) {
                let (g, problems) = Graph::new(&list);
                prop_assert!(problems.is_empty());
                let cycles = g.cycles();
                let levels = g.levels();
                let placed: usize = levels.iter().map(Vec::len).sum();
                prop_assert_eq!(cycles.is_empty(), placed == list.len());
                let mut level_of = vec![usize::MAX; list.len()];
                for (l, members) in levels.iter().enumerate() {
                    for &m in members {
                        level_of[m] = l;
                    }
                }
                for (l, members) in levels.iter().enumerate() {
                    for &m in members {
                        for &d in &g.deps[m] {
                            prop_assert!(level_of[d] < l);
                        }
                    }
                }
                for c in &cycles {
                    prop_assert!(c.len() >= 2);
                    prop_assert_eq!(c.first(), c.last());
                    for pair in c.windows(2) {
                        let (a, b) = (g.index_of(&pair[0]).unwrap_or(0), g.index_of(&pair[1]).unwrap_or(0));
                        prop_assert!(g.deps[a].contains(&b), "{} does not depend on {}", pair[0], pair[1]);
                    }
                }
            }

            /// What depends on a workstream, transitively, is exactly what a failure must block.
            #[test]
            fn downstream_is_the_transitive_closure(list in graph(), pick in 0usize..40) {
                let (g, _) = Graph::new(&list);
                let i = pick % list.len();
                let down = g.downstream(i);
                for &d in &down {
                    // d reaches i through its dependencies.
                    let mut seen = vec![false; list.len()];
                    let mut stack = vec![d];
                    let mut reaches = false;
                    while let Some(v) = stack.pop() {
                        if std::mem::replace(&mut seen[v], true) { continue; }
                        if g.deps[v].contains(&i) { reaches = true; break; }
                        stack.extend(g.deps[v].iter().copied());
                    }
                    prop_assert!(reaches);
                }
                for (v, deps) in g.deps.iter().enumerate() {
                    if deps.contains(&i) && v != i {
                        prop_assert!(down.contains(&v));
                    }
                }
            }
        }
    }
}
