//! The order resources are made in.

use std::collections::BTreeMap;

use crate::model::Resource;

/// `resources` so that each comes after everything it depends on (ties in
/// the given order). Dependencies outside the list are ignored.
pub fn topological(resources: &[Resource]) -> Vec<&Resource> {
    let index: BTreeMap<&str, usize> = resources
        .iter()
        .enumerate()
        .map(|(i, r)| (r.address.as_str(), i))
        .collect();
    let mut done = vec![false; resources.len()];
    let mut out = Vec::with_capacity(resources.len());
    fn visit<'a>(
        i: usize,
        resources: &'a [Resource],
        index: &BTreeMap<&str, usize>,
        done: &mut Vec<bool>,
        out: &mut Vec<&'a Resource>,
        depth: usize,
    ) {
        if done[i] || depth > resources.len() {
            return;
        }
        done[i] = true;
        for dep in &resources[i].deps {
            if let Some(&j) = index.get(dep.as_str()) {
                visit(j, resources, index, done, out, depth + 1);
            }
        }
        out.push(&resources[i]);
    }
    for i in 0..resources.len() {
        visit(i, resources, &index, &mut done, &mut out, 0);
    }
    out
}
