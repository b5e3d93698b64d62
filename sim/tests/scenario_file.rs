//! Scenario files: the documented examples in `scenarios/` parse and resolve, and a bad file is refused with a
//! message that names what is wrong (an unknown key, an unknown fault kind, a robot that does not exist, a
//! malformed order log).

use std::path::{Path, PathBuf};

use sim::ScenarioFile;
use sim::scenario::{Buildings, Customers, Fault, PickFrom};

fn scenarios() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

/// Parses and resolves `text` as if it were a file in `scenarios/`; the error text when refused.
fn check(text: &str) -> Result<sim::Scenario, String> {
    ScenarioFile::parse(text)?.resolve(&scenarios()).map(|(_, s)| s)
}

fn refused(text: &str, expect: &[&str]) {
    let err = check(text).expect_err("must be refused");
    for e in expect {
        assert!(err.contains(e), "error {err:?} does not mention {e:?}");
    }
}

#[test]
fn the_example_scenarios_load() {
    let (map, lunch) = ScenarioFile::load(&scenarios().join("monaco-lunch.toml")).expect("lunch loads");
    assert!(map.ends_with("monaco.osm.pbf") && map.exists(), "{}", map.display());
    assert_eq!((lunch.robots, lunch.shops, lunch.pick_from), (10, 5, PickFrom::Osm));
    assert_eq!(lunch.hourly_profile.len(), 24);
    assert_eq!(lunch.orders_per_hour, 30.0);
    assert_eq!(lunch.customers, Customers::Buildings);
    assert_eq!(lunch.buildings, Buildings::Off);

    let (_, faults) = ScenarioFile::load(&scenarios().join("monaco-faults.toml")).expect("faults loads");
    let kinds: Vec<&str> = faults.faults.iter().map(Fault::kind).collect();
    assert_eq!(kinds, ["breakdown", "block_sidewalk", "link_drop", "dispatcher_restart"]);
    assert_eq!(faults.shop_sites.len(), 2);
    assert_eq!(faults.shops, 3);

    let (_, replay) = ScenarioFile::load(&scenarios().join("monaco-replay.toml")).expect("replay loads");
    assert_eq!(replay.replay.len(), 12);
    assert_eq!(replay.replay[1].shop, 1, "the second row names the shop `port`");
    assert_eq!(replay.depots.len(), 3);
    assert!(replay.replay.windows(2).all(|w| w[0].at_s <= w[1].at_s));
}

#[test]
fn an_empty_file_is_the_default_day() {
    assert_eq!(check("").expect("valid"), sim::Scenario::default());
}

#[test]
fn bad_files_are_refused_with_a_clear_message() {
    refused("seed = 1\nrobtos = 3\n", &["unknown field `robtos`", "line 2"]);
    refused("[fleet]\nspeed = 2.0\n", &["unknown field `speed`"]);
    refused("[[faults]]\nat_s = 10\nkind = \"meteor\"\n", &["meteor", "breakdown"]);
    refused("[[faults]]\nat_s = 10\nkind = \"breakdown\"\nrobot = 99\n", &["robot 99", "0..10"]);
    refused(
        "[[faults]]\nat_s = 10\nkind = \"breakdown\"\nrobot = 1\nduration_s = 5\n",
        &["unknown field `duration_s`"],
    );
    refused("[[shops]]\nname = \"x\"\nlat = 43.7\n", &["shops entry 1", "`name`, `lat` and `lon`"]);
    refused("[[shops]]\nname = \"x\"\nlat = 143.7\nlon = 7.4\n", &["latitude"]);
    refused("[fleet]\ndepots = \"everywhere\"\n", &["fleet.depots"]);
    refused("[demand]\nprofile = [1, 2]\n", &["24 values"]);
    refused("[demand]\nreplay = \"nope.csv\"\n", &["cannot read the order log", "nope.csv"]);
    refused("duration_h = 2\nduration_s = 60\n", &["duration_h or duration_s"]);
    refused("[dispatch]\npolicy = \"nearest\"\n", &["nearest", "greedy"]);
}

#[test]
fn a_scenario_picks_the_dispatch_policy() {
    use fleet_core::dispatcher::Policy;
    assert_eq!(check("").expect("valid").dispatch.policy, Policy::InsertImprove);
    assert_eq!(check("[dispatch]\npolicy = \"greedy\"\n").expect("valid").dispatch.policy, Policy::Greedy);
}

#[test]
fn a_malformed_order_log_names_the_line() {
    let names = [("casino", 0usize)].into_iter().collect();
    let ok = "at_s,shop,lat,lon,grams,prep_min,deadline_min\n10,casino,43.74,7.43,500,2,40\n20,1,43.73,7.42,500,2,40\n";
    let rows = sim::scenario::parse_replay(ok, &names).expect("valid");
    assert_eq!(rows.iter().map(|r| r.shop).collect::<Vec<_>>(), [0, 1]);
    let bad = |text: &str, expect: &str| {
        let e = sim::scenario::parse_replay(text, &names).expect_err("refused");
        assert!(e.contains(expect), "{e:?} does not mention {expect:?}");
    };
    bad("at_s,shop,lat\n", "the header must be");
    bad("at_s,shop,lat,lon,grams,prep_min,deadline_min\n10,casino,43.74,7.43,heavy,2,40\n", "line 2: grams");
    bad("at_s,shop,lat,lon,grams,prep_min,deadline_min\n10,bakery,43.74,7.43,500,2,40\n", "shop \"bakery\"");
    bad("at_s,shop,lat,lon,grams,prep_min,deadline_min\n10,casino,43.74\n", "line 2: 3 fields");
}
