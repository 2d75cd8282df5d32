// SPDX-License-Identifier: Apache-2.0
//! Who the caller is (bearer token → user) and what they may do: a small
//! RBAC model whose answers drive both 403s and SelfSubjectAccessReviews.

/// One RBAC policy rule, as in a Role or ClusterRole. `"*"` matches anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub verbs: Vec<String>,
    /// `""` is the core group.
    pub api_groups: Vec<String>,
    /// Plural resource names; subresources as `pods/log`.
    pub resources: Vec<String>,
    /// Namespaces the rule applies in (a RoleBinding); empty means every
    /// namespace and the cluster scope (a ClusterRoleBinding).
    pub namespaces: Vec<String>,
}

impl Rule {
    /// A cluster-wide rule.
    pub fn new(verbs: &[&str], api_groups: &[&str], resources: &[&str]) -> Rule {
        let own = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        Rule {
            verbs: own(verbs),
            api_groups: own(api_groups),
            resources: own(resources),
            namespaces: Vec::new(),
        }
    }

    /// Restricts the rule to one namespace (as bound by a RoleBinding there).
    pub fn in_namespace(mut self, namespace: &str) -> Rule {
        self.namespaces.push(namespace.to_owned());
        self
    }

    fn allows(&self, verb: &str, group: &str, resource: &str, namespace: Option<&str>) -> bool {
        let any = |list: &[String], v: &str| list.iter().any(|x| x == "*" || x == v);
        any(&self.verbs, verb)
            && any(&self.api_groups, group)
            && any(&self.resources, resource)
            && (self.namespaces.is_empty()
                || namespace.is_some_and(|ns| self.namespaces.iter().any(|n| n == ns)))
    }
}

/// A caller the kubeconfig has a token (and a context of the same name) for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
    pub rules: Vec<Rule>,
}

impl User {
    /// A cluster admin (group `system:masters`: allowed everything).
    pub fn admin(name: &str) -> User {
        User {
            name: name.to_owned(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
            rules: Vec::new(),
        }
    }

    /// A user allowed exactly `rules`.
    pub fn with_rules(name: &str, rules: Vec<Rule>) -> User {
        User {
            name: name.to_owned(),
            groups: vec!["system:authenticated".into()],
            rules,
        }
    }

    pub(crate) fn anonymous() -> User {
        User {
            name: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
            rules: Vec::new(),
        }
    }

    pub(crate) fn is_admin(&self) -> bool {
        self.groups.iter().any(|g| g == "system:masters")
    }

    /// Whether the user may `verb` `resource` (`pods/log` for a subresource).
    pub fn can(&self, verb: &str, group: &str, resource: &str, namespace: Option<&str>) -> bool {
        self.is_admin()
            || self
                .rules
                .iter()
                .any(|r| r.allows(verb, group, resource, namespace))
    }
}

/// Tokens → users.
#[derive(Debug, Default)]
pub(crate) struct Rbac {
    users: Vec<(String, User)>,
}

impl Rbac {
    pub fn add(&mut self, user: User) -> String {
        let token = format!("sandbox-{}-{:016x}", user.name, rand::random::<u64>());
        self.users.retain(|(_, u)| u.name != user.name);
        self.users.push((token.clone(), user));
        token
    }

    pub fn authenticate(&self, token: &str) -> Option<User> {
        self.users
            .iter()
            .find(|(t, _)| t == token)
            .map(|(_, u)| u.clone())
    }

    pub fn tokens(&self) -> Vec<(String, String)> {
        self.users
            .iter()
            .map(|(t, u)| (u.name.clone(), t.clone()))
            .collect()
    }
}
