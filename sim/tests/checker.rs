//! The checker's own rules, fed by hand.

use specmirror_core::Regions;
use specmirror_sim::checker::Checker;

#[test]
fn a_write_without_its_lock_is_flagged() {
    let mut c = Checker::new(8192, 4096);
    assert!(!c.target_write(1, 1, 0, 10).is_empty());
    c.lock_acquired(1, Regions { first: 0, count: 1 }).unwrap();
    assert!(c.target_write(1, 1, 0, 10).is_empty());
    assert!(
        !c.target_write(1, 1, 4000, 200).is_empty(),
        "outside the lock"
    );
}

#[test]
fn overlapping_grants_are_flagged() {
    let mut c = Checker::new(8192, 4096);
    c.lock_acquired(1, Regions { first: 0, count: 2 }).unwrap();
    assert!(c.lock_acquired(2, Regions { first: 1, count: 1 }).is_err());
    c.local_acquire(7, Regions { first: 1, count: 1 })
        .unwrap_err();
}

#[test]
fn out_of_order_landing_is_flagged() {
    let mut c = Checker::new(8192, 4096);
    assert!(c.target_applied(5, 0, 10).is_empty());
    assert!(!c.target_applied(4, 100, 10).is_empty());
    c.target_session();
    assert!(
        c.target_applied(4, 100, 10).is_empty(),
        "a new session replays from scratch"
    );
}

#[test]
fn a_lost_acknowledged_write_is_flagged() {
    let mut c = Checker::new(16, 4096);
    c.submit_write(1, 0, vec![9; 4], 0);
    let src = [9u8; 16];
    let tgt = [0u8; 16];
    let v = c.write_answered(1, Ok(()), 10, &src, &tgt);
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("target"));
    assert!(!c.final_check(&tgt, "target").is_empty());
    assert!(c
        .final_check(&[9, 9, 9, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], "source")
        .is_empty());
}

#[test]
fn a_failed_write_must_leave_no_trace() {
    let mut c = Checker::new(8, 4096);
    c.submit_write(1, 0, vec![5; 4], 0);
    c.write_answered(1, Err(5), 1, &[0; 8], &[0; 8]);
    assert!(!c
        .final_check(&[5, 5, 5, 5, 0, 0, 0, 0], "target")
        .is_empty());
    assert!(c.final_check(&[0; 8], "target").is_empty());
}
