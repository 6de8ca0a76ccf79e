//! LAIN's instance environment (LAIN reference §environment), in one place: what every instance of a proc
//! gets (computed when a release is deployed and kept in its [`ProcPlan`](super::records::ProcPlan))
//! and what each instance adds (its number and node, when the reconciler creates it).

/// What a proc's instances share, after the user's and the proc type's variables (`user`, in
/// order; later entries win).
pub struct ProcIdentity<'a> {
    /// App name.
    pub app: &'a str,
    /// Release version.
    pub release: &'a str,
    /// Proc name.
    pub proc: &'a str,
    /// Proc type.
    pub proc_type: &'a str,
    /// Full name `<app>.<type>.<name>`.
    pub full_name: &'a str,
    /// The cluster's main domain (empty when none is configured).
    pub domain: &'a str,
    /// For a portal: the service name it serves.
    pub service_name: Option<&'a str>,
}

/// The environment every instance of a proc gets: `user` followed by LAIN's variables.
pub fn proc_env(user: Vec<(String, String)>, p: &ProcIdentity<'_>) -> Vec<(String, String)> {
    let mut env = user;
    env.extend(
        [
            ("LAIN_APPNAME", p.app),
            ("LAIN_APP_RELEASE_VERSION", p.release),
            ("LAIN_PROCNAME", p.proc),
            ("LAIN_PROCTYPE", p.proc_type),
            ("LAIN_DOMAIN", p.domain),
            ("DEPLOYD_POD_NAME", p.full_name),
            ("DEPLOYD_POD_NAMESPACE", p.app),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    if let Some(service) = p.service_name {
        env.push(("LAIN_SERVICE_NAME".into(), service.to_string()));
    }
    env
}

/// The environment of instance `no` of a proc on `node`: the proc's (`proc_env`) and the
/// instance's own variables.
pub fn instance_env(proc_env: &[(String, String)], no: u32, node: &str) -> Vec<(String, String)> {
    let mut env = proc_env.to_vec();
    env.extend([
        ("LAIN_INSTANCE_NO".to_string(), no.to_string()),
        ("DEPLOYD_POD_INSTANCE_NO".to_string(), no.to_string()),
        ("LAIN_NODE".to_string(), node.to_string()),
    ]);
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lain_variables_follow_the_users_and_the_instance_adds_its_number_and_node() {
        let p = ProcIdentity {
            app: "hello",
            release: "r1",
            proc: "web",
            proc_type: "web",
            full_name: "hello.web.web",
            domain: "lain.local",
            service_name: None,
        };
        let env = proc_env(vec![("LAIN_APPNAME".into(), "mine".into())], &p);
        let last = |env: &[(String, String)], k: &str| {
            env.iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(last(&env, "LAIN_APPNAME").as_deref(), Some("hello"));
        assert_eq!(
            last(&env, "DEPLOYD_POD_NAME").as_deref(),
            Some("hello.web.web")
        );
        assert_eq!(last(&env, "LAIN_SERVICE_NAME"), None);
        let i = instance_env(&env, 3, "n2");
        assert_eq!(&i[..env.len()], &env[..]);
        assert_eq!(last(&i, "LAIN_INSTANCE_NO").as_deref(), Some("3"));
        assert_eq!(last(&i, "DEPLOYD_POD_INSTANCE_NO").as_deref(), Some("3"));
        assert_eq!(last(&i, "LAIN_NODE").as_deref(), Some("n2"));
    }
}
