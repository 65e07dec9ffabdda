//! Fuzzing port specifications (`-p`, `--scan`): whatever parses names a set of ports that the
//! list's lookups agree on and that renders back, as ranges, to the same set; a specification
//! built from valid items names exactly the union of its items.

mod fuzzing;

use bolero::{check, TypeGenerator};
use prober::sweep::ports::PortList;

/// The ports of `list`, in its order, through its public lookups.
fn ports_of(list: &PortList) -> Vec<u16> {
    (0..list.len()).map(|index| list.get(index)).collect()
}

/// `ports` (ascending) as the shortest specification: runs of consecutive ports as ranges.
fn render(ports: &[u16]) -> String {
    let mut items: Vec<String> = Vec::new();
    let mut rest = ports;
    while let Some(&first) = rest.first() {
        let run = rest
            .iter()
            .zip(u32::from(first)..)
            .take_while(|(&port, expected)| u32::from(port) == *expected)
            .count();
        let last = rest[run - 1];
        items.push(if first == last {
            first.to_string()
        } else {
            format!("{first}-{last}")
        });
        rest = &rest[run..];
    }
    items.join(",")
}

/// What every parsed list must satisfy, whatever its specification.
fn check_list(spec: &str, list: &PortList) {
    let ports = ports_of(list);
    assert_eq!(
        list.spec(),
        spec,
        "the header shows the specification as typed"
    );
    assert!(!ports.is_empty() && !list.is_empty(), "a list names ports");
    assert!(
        ports.windows(2).all(|pair| pair[0] < pair[1]),
        "ascending, no repeats: {ports:?}"
    );
    assert_ne!(ports[0], 0, "port 0 is never probed");
    assert_eq!(list.single(), (ports.len() == 1).then(|| ports[0]));
    for (index, &port) in ports.iter().enumerate() {
        assert_eq!(list.index(port), Some(index as u64), "port {port}");
        // The ports around a listed one are listed exactly when they come next in the list.
        for neighbour in [port.wrapping_sub(1), port.wrapping_add(1)] {
            assert_eq!(
                list.index(neighbour).is_some(),
                ports.binary_search(&neighbour).is_ok(),
                "port {neighbour}, next to {port}"
            );
        }
    }
    assert_eq!(list.index(0), None);
    let rendered = render(&ports);
    let reparsed = PortList::parse(&rendered)
        .unwrap_or_else(|error| panic!("the rendering {rendered:?} does not parse: {error:#}"));
    assert_eq!(
        ports_of(&reparsed),
        ports,
        "{spec:?} renders as {rendered:?}"
    );
}

#[test]
fn any_text_that_parses_is_a_consistent_port_set() {
    check!()
        .with_type::<String>()
        .with_test_time(fuzzing::CI_TIME)
        .for_each(|spec| {
            if let Ok(list) = PortList::parse(spec) {
                check_list(spec, &list);
            }
        });
}

/// One comma-separated item of a specification.
#[derive(Clone, Copy, Debug, TypeGenerator)]
enum Item {
    Port(u16),
    Range(u16, u16),
    All,
    Known,
}

impl Item {
    fn text(self) -> String {
        match self {
            Item::Port(port) => port.to_string(),
            Item::Range(first, last) => format!("{first}-{last}"),
            Item::All => "all".to_owned(),
            Item::Known => "known".to_owned(),
        }
    }

    /// Marks the ports the item names in `union`; false when it is malformed (port 0, a
    /// backward range).
    fn mark(self, known: &[u16], union: &mut [bool]) -> bool {
        let range = match self {
            Item::Port(0) | Item::Range(0, _) => return false,
            Item::Port(port) => port..=port,
            Item::Range(first, last) if first > last => return false,
            Item::Range(first, last) => first..=last,
            Item::All => 1..=u16::MAX,
            Item::Known => {
                for &port in known {
                    union[usize::from(port)] = true;
                }
                return true;
            }
        };
        union[usize::from(*range.start())..=usize::from(*range.end())].fill(true);
        true
    }
}

#[test]
fn a_list_of_valid_items_names_exactly_their_union() {
    // `known` stands for the TCP ports of /etc/services, whatever this machine has there.
    let known = PortList::parse("known").map_or(Vec::new(), |list| ports_of(&list));
    check!()
        .with_type::<(Vec<Item>, bool)>()
        .with_test_time(fuzzing::CI_TIME)
        .for_each(|(items, spaced)| {
            let separator = if *spaced { " , " } else { "," };
            let spec = items
                .iter()
                .map(|item| item.text())
                .collect::<Vec<_>>()
                .join(separator);
            let mut union = vec![false; 1 << 16];
            let well_formed = items.iter().all(|item| item.mark(&known, &mut union));
            let expected: Vec<u16> = (1..=u16::MAX)
                .filter(|&port| union[usize::from(port)])
                .collect();
            match (PortList::parse(&spec), well_formed) {
                (Ok(list), true) => {
                    check_list(&spec, &list);
                    assert_eq!(ports_of(&list), expected, "{spec:?}");
                }
                (Err(_), true) if expected.is_empty() => {}
                (Err(error), true) => panic!("{spec:?} names ports but was refused: {error:#}"),
                (Ok(list), false) => panic!(
                    "{spec:?} has a malformed item but parsed as {}",
                    render(&ports_of(&list))
                ),
                (Err(_), false) => {}
            }
        });
}
