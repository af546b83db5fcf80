//! Routes of the cluster: `/1.0/cluster`, `/1.0/cluster/members[/NAME]`,
//! `POST /1.0/cluster/members/NAME/state` (evacuate, restore),
//! `PUT /1.0/cluster/members/NAME` (its groups), `/1.0/cluster/groups[/NAME]`,
//! `/1.0/services` (a Kante extension: the live service records), and `POST /internal/cluster/accept`, which a joining member sends (the
//! only one of them open to untrusted callers: its token's secret is the
//! credential).

use crate::methods::{get, post};
use axum::extract::{Path, State};
use kante_api::cluster::{
    ClusterAcceptPost, ClusterGroup, ClusterGroupPost, ClusterGroupPut, ClusterMemberPut,
    ClusterMemberStatePost, ClusterMembersPost, ClusterPut,
};
use kante_engine::front::Request;

use super::Params;
use crate::body::Json;
use crate::response::{answer, listing, ApiResult};
use crate::{AppState, Routes};

pub fn routes(r: Routes) -> Routes {
    r.route("/1.0/cluster", get(cluster_get).put(cluster_put))
        .route("/1.0/cluster/members", get(members).post(member_add))
        .route(
            "/1.0/cluster/members/{name}",
            get(member_get).delete(member_delete).put(member_put),
        )
        .route("/1.0/cluster/groups", get(groups).post(group_create))
        .route(
            "/1.0/cluster/groups/{name}",
            get(group_get)
                .put(group_put)
                .post(group_rename)
                .delete(group_delete),
        )
        .route(
            "/1.0/cluster/members/{name}/state",
            post(member_state).get(member_state_get),
        )
        .route("/internal/cluster/accept", post(accept))
        .route("/1.0/services", get(services))
}

/// `GET /1.0/services` (a Kante extension): the cluster's live services.
pub async fn services(State(s): State<AppState>) -> ApiResult {
    answer(&s, Request::ServiceList).await
}

pub async fn cluster_get(State(s): State<AppState>) -> ApiResult {
    answer(&s, Request::ClusterGet).await
}

pub async fn cluster_put(State(s): State<AppState>, Json(put): Json<ClusterPut>) -> ApiResult {
    answer(&s, Request::ClusterPut(Box::new(put))).await
}

pub async fn members(State(s): State<AppState>, q: Params) -> ApiResult {
    listing(&s, Request::ClusterMembers, &q).await
}

pub async fn member_add(
    State(s): State<AppState>,
    Json(post): Json<ClusterMembersPost>,
) -> ApiResult {
    answer(&s, Request::ClusterMemberAdd(post)).await
}

pub async fn member_get(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    answer(&s, Request::ClusterMemberGet { name }).await
}

pub async fn member_delete(
    State(s): State<AppState>,
    Path(name): Path<String>,
    q: Params,
) -> ApiResult {
    let force = q
        .get("force")
        .is_some_and(|v| matches!(v.as_str(), "1" | "true"));
    answer(&s, Request::ClusterMemberDelete { name, force }).await
}

/// `PUT /1.0/cluster/members/NAME`: the member's groups.
pub async fn member_put(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(put): Json<ClusterMemberPut>,
) -> ApiResult {
    answer(&s, Request::ClusterMemberPut { name, put }).await
}

pub async fn groups(State(s): State<AppState>, q: Params) -> ApiResult {
    listing(&s, Request::ClusterGroups, &q).await
}

pub async fn group_create(State(s): State<AppState>, Json(g): Json<ClusterGroup>) -> ApiResult {
    answer(&s, Request::ClusterGroupCreate(g)).await
}

pub async fn group_get(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    answer(&s, Request::ClusterGroupGet { name }).await
}

/// `PUT` of a group: its description and exactly its members.
pub async fn group_put(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(put): Json<ClusterGroupPut>,
) -> ApiResult {
    answer(&s, Request::ClusterGroupUpdate { name, put }).await
}

pub async fn group_rename(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(post): Json<ClusterGroupPost>,
) -> ApiResult {
    answer(
        &s,
        Request::ClusterGroupRename {
            name,
            new: post.name,
        },
    )
    .await
}

pub async fn group_delete(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    answer(&s, Request::ClusterGroupDelete { name }).await
}

/// `POST /1.0/cluster/members/NAME/state`: evacuate or restore (an
/// operation, run by member NAME: forwarded there).
pub async fn member_state(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Json(post): Json<ClusterMemberStatePost>,
) -> ApiResult {
    answer(&s, Request::ClusterMemberState { name, post }).await
}

/// `GET /1.0/cluster/members/NAME/state`: the member's load, memory and
/// pools (answered by member NAME: forwarded there).
pub async fn member_state_get(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    answer(&s, Request::ClusterMemberStateGet { name }).await
}

pub async fn accept(State(s): State<AppState>, Json(post): Json<ClusterAcceptPost>) -> ApiResult {
    answer(&s, Request::ClusterAccept(Box::new(post))).await
}
