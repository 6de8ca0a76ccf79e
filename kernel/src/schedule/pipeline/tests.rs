use super::{Step, best_node, explain_no_fit};

#[test]
fn best_node_prefers_score_then_lowest_id() {
    assert_eq!(best_node(&[0b1010], &[]), Some(1));
    assert_eq!(best_node(&[0, 0b100], &[]), Some(66));
    assert_eq!(best_node(&[0], &[]), None);
    assert_eq!(
        best_node(&[0], &[(1, vec![7; 64])]),
        None,
        "scores do not make a node feasible"
    );
    let mut a = vec![0u16; 64];
    a[1] = 5;
    a[3] = 9;
    assert_eq!(best_node(&[0b1010], &[(1, a.clone())]), Some(3));
    let mut b = vec![0u16; 64];
    b[1] = 3;
    assert_eq!(
        best_node(&[0b1010], &[(1, a.clone()), (2, b)]),
        Some(1),
        "5 + 2*3 > 9"
    );
    a[1] = 9;
    assert_eq!(
        best_node(&[0b1010], &[(1, a)]),
        Some(1),
        "a tie goes to the lowest id"
    );
    assert_eq!(
        best_node(&[0b1000], &[(1, vec![5000; 64])]),
        Some(3),
        "scores above 1000 are capped"
    );
    assert_eq!(
        best_node(&[0b0110], &[(1, vec![0; 64])]),
        Some(1),
        "zero scores still place"
    );
}

fn step(member: &str, given: u32, kept: Option<u32>) -> Step {
    Step {
        member: member.into(),
        given,
        kept,
    }
}

#[test]
fn no_fit_names_the_filter_that_removed_the_last_candidates() {
    assert_eq!(
        explain_no_fit(
            3,
            &[
                step("resources", 3, Some(2)),
                step("constraint", 2, Some(0))
            ]
        ),
        "`constraint` removed the last 2 candidates (`resources` kept 2 of 3)"
    );
    assert_eq!(
        explain_no_fit(1, &[step("resources", 1, Some(0))]),
        "`resources` removed the last 1 candidate"
    );
    assert_eq!(
        explain_no_fit(
            4,
            &[
                step("zone", 4, None),
                step("resources", 4, Some(1)),
                step("constraint", 1, Some(0))
            ]
        ),
        "`constraint` removed the last 1 candidate (`zone` was skipped (it failed), \
         `resources` kept 1 of 4)"
    );
    assert_eq!(explain_no_fit(0, &[]), "there is no node");
}
