//! `trundle.v1.OpsService`, for operators: shops, robots, tokens, the map, the fleet.

use std::pin::Pin;
use std::sync::Arc;

use fleet_core::dispatcher::{Dispatcher, Input, NewMap, Reply};
use fleet_core::map::MapGraph;
use fleet_core::{LatLon, NodeId};
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use trundle_proto::convert::{self, WireError, latlon, order_id, robot_id, shop_id};
use trundle_proto::pb;

use super::orders::async_stream;
use super::{Ctx, unexpected};
use crate::Error;
use crate::core::FleetNote;
use crate::mapfile;
use crate::store::Principal;

pub struct OpsApi(pub Ctx);

/// An open alert on the wire.
pub fn alert_to_wire(a: &fleet_core::dispatcher::OpenAlert) -> pb::Alert {
    pb::Alert {
        robot_id: a.robot.as_ref().map(ToString::to_string).unwrap_or_default(),
        message: a.message.clone(),
        alert_id: a.id,
        raised_at: Some(convert::timestamp_to_wire(a.raised_at)),
    }
}

type FleetStream = Pin<Box<dyn Stream<Item = Result<pb::FleetEvent, Status>> + Send>>;

impl OpsApi {
    async fn robot_reply(&self, robot: fleet_core::RobotId) -> Result<pb::Robot, Status> {
        let r = self.0.core.query(move |d| d.robot(&robot).map(convert::robot_to_wire)).await?;
        r.ok_or_else(|| Error::not_found("robot not found").into())
    }

    fn edge(r: &pb::EdgeRequest) -> (NodeId, NodeId) {
        (NodeId(r.from_node), NodeId(r.to_node))
    }
}

#[tonic::async_trait]
impl pb::ops_service_server::OpsService for OpsApi {
    async fn register_shop(
        &self,
        req: Request<pb::RegisterShopRequest>,
    ) -> Result<Response<pb::RegisterShopResponse>, Status> {
        self.0.auth.operator(req.metadata())?;
        let r = req.get_ref();
        let id = shop_id("shop_id", &r.shop_id).map_err(Error::from)?;
        let pos: LatLon = latlon("location", r.location.as_ref()).map_err(Error::from)?;
        let shop = match self.0.core.call(Input::RegisterShop { id: id.clone(), name: r.name.clone(), pos }).await? {
            Reply::Shop(s) => s,
            other => return Err(unexpected(other)),
        };
        let token = self.0.auth.issue(Principal::Shop(id))?;
        Ok(Response::new(pb::RegisterShopResponse { shop: Some(convert::shop_to_wire(&shop)), token }))
    }

    async fn list_shops(&self, req: Request<pb::ListShopsRequest>) -> Result<Response<pb::ListShopsResponse>, Status> {
        self.0.auth.operator(req.metadata())?;
        let shops = self.0.core.query(|d| d.shops().map(convert::shop_to_wire).collect()).await?;
        Ok(Response::new(pb::ListShopsResponse { shops }))
    }

    async fn register_robot(
        &self,
        req: Request<pb::RegisterRobotRequest>,
    ) -> Result<Response<pb::RegisterRobotResponse>, Status> {
        self.0.auth.operator(req.metadata())?;
        let r = req.get_ref();
        let id = robot_id("robot_id", &r.robot_id).map_err(Error::from)?;
        let depot = latlon("depot", r.depot.as_ref()).map_err(Error::from)?;
        let robot = match self.0.core.call(Input::RegisterRobot { id: id.clone(), name: r.name.clone(), depot }).await?
        {
            Reply::Robot(r) => r,
            other => return Err(unexpected(other)),
        };
        let token = self.0.auth.issue(Principal::Robot(id))?;
        Ok(Response::new(pb::RegisterRobotResponse { robot: Some(convert::robot_to_wire(&robot)), token }))
    }

    async fn list_robots(
        &self,
        req: Request<pb::ListRobotsRequest>,
    ) -> Result<Response<pb::ListRobotsResponse>, Status> {
        self.0.auth.operator(req.metadata())?;
        let robots = self.0.core.query(|d| d.robots().map(convert::robot_to_wire).collect()).await?;
        Ok(Response::new(pb::ListRobotsResponse { robots }))
    }

    async fn issue_token(
        &self,
        req: Request<pb::IssueTokenRequest>,
    ) -> Result<Response<pb::IssueTokenResponse>, Status> {
        self.0.auth.operator(req.metadata())?;
        let r = req.get_ref();
        let principal = self.principal_of(r.role, &r.subject).await?;
        let token = self.0.auth.issue(principal)?;
        Ok(Response::new(pb::IssueTokenResponse { token }))
    }

    async fn revoke_tokens(
        &self,
        req: Request<pb::RevokeTokensRequest>,
    ) -> Result<Response<pb::RevokeTokensResponse>, Status> {
        self.0.auth.operator(req.metadata())?;
        let r = req.get_ref();
        let principal = self.principal_of(r.role, &r.subject).await?;
        if r.token.len() > 256 {
            return Err(
                Error::Wire(WireError::new("token", "token is longer than any token this dispatcher issues")).into()
            );
        }
        let token = Some(r.token.as_str()).filter(|t| !t.is_empty());
        let revoked = self.0.auth.revoke(&principal, token)?;
        Ok(Response::new(pb::RevokeTokensResponse { revoked: revoked as u32 }))
    }

    async fn get_map(&self, req: Request<pb::GetMapRequest>) -> Result<Response<pb::MapInfo>, Status> {
        self.0.auth.operator(req.metadata())?;
        let info = self.0.core.query(|d| map_info(d.map())).await?;
        Ok(Response::new(info))
    }

    async fn load_map(&self, req: Request<pb::LoadMapRequest>) -> Result<Response<pb::LoadMapResponse>, Status> {
        self.0.auth.operator(req.metadata())?;
        let bytes = req.into_inner().osm_pbf;
        if bytes.is_empty() {
            return Err(Error::Wire(WireError::new("osm_pbf", "the map is empty: send an .osm.pbf extract")).into());
        }
        // Importing and preparing a city map takes seconds: off the core's thread, and off the runtime's.
        let config = self.0.core.query(|d| d.config().clone()).await?;
        let data = bytes.clone();
        let map = tokio::task::spawn_blocking(move || {
            let (mut map, _) = MapGraph::from_osm(&data).map_err(|e| e.to_string())?;
            Dispatcher::prepare_map(&mut map, &config);
            Ok::<_, String>(map)
        })
        .await
        .map_err(|e| Error::Unexpected(format!("map import task: {e}")))?
        .map_err(|e| Error::Wire(WireError::new("osm_pbf", format!("not a usable map: {e}"))))?;
        let dir = self.0.data_dir.clone();
        mapfile::write_pending(&dir, &bytes)?;
        let reply = self.0.core.call(Input::LoadMap { map: NewMap(Arc::new(map)) }).await;
        let swap = match reply {
            Ok(Reply::MapSwapped(s)) => s,
            Ok(other) => {
                mapfile::discard_pending(&dir);
                return Err(unexpected(other));
            }
            Err(e) => {
                mapfile::discard_pending(&dir);
                return Err(e.into());
            }
        };
        // Committed: the store names the new map now; the file follows (a crash before this is recovered at the
        // next start from the pending file).
        mapfile::promote_pending(&dir)?;
        let info = self.0.core.query(|d| map_info(d.map())).await?;
        tracing::info!(
            fingerprint = %swap.fingerprint,
            orders_moved = swap.orders_moved,
            cancelled = swap.cancelled.len(),
            "map swapped"
        );
        Ok(Response::new(pb::LoadMapResponse {
            map: Some(info),
            orders_moved: swap.orders_moved as u32,
            cancelled: swap
                .cancelled
                .iter()
                .map(|(id, reason)| pb::CancelledOrder { order_id: id.to_string(), reason: reason.clone() })
                .collect(),
            closures_dropped: swap.closures_dropped as u32,
        }))
    }

    async fn close_edge(&self, req: Request<pb::EdgeRequest>) -> Result<Response<pb::EdgeResponse>, Status> {
        self.0.auth.operator(req.metadata())?;
        let (a, b) = Self::edge(req.get_ref());
        self.0.core.call(Input::CloseEdge { a, b }).await?;
        Ok(Response::new(pb::EdgeResponse {}))
    }

    async fn open_edge(&self, req: Request<pb::EdgeRequest>) -> Result<Response<pb::EdgeResponse>, Status> {
        self.0.auth.operator(req.metadata())?;
        let (a, b) = Self::edge(req.get_ref());
        self.0.core.call(Input::OpenEdge { a, b }).await?;
        Ok(Response::new(pb::EdgeResponse {}))
    }

    async fn pause_robot(&self, req: Request<pb::RobotRequest>) -> Result<Response<pb::Robot>, Status> {
        self.0.auth.operator(req.metadata())?;
        let robot = robot_id("robot_id", &req.get_ref().robot_id).map_err(Error::from)?;
        self.0.core.call(Input::PauseRobot { robot: robot.clone() }).await?;
        Ok(Response::new(self.robot_reply(robot).await?))
    }

    async fn resume_robot(&self, req: Request<pb::RobotRequest>) -> Result<Response<pb::Robot>, Status> {
        self.0.auth.operator(req.metadata())?;
        let robot = robot_id("robot_id", &req.get_ref().robot_id).map_err(Error::from)?;
        self.0.core.call(Input::ResumeRobot { robot: robot.clone() }).await?;
        Ok(Response::new(self.robot_reply(robot).await?))
    }

    async fn hand_off_robot(&self, req: Request<pb::HandOffRobotRequest>) -> Result<Response<pb::Robot>, Status> {
        self.0.auth.operator(req.metadata())?;
        let r = req.get_ref();
        let robot = robot_id("robot_id", &r.robot_id).map_err(Error::from)?;
        fleet_core::area::ServiceArea::check_name(&r.to_area)
            .map_err(|e| Error::Core(fleet_core::CoreError::field("to_area", e.to_string())))?;
        let Some(etcd) = self.0.etcd.clone() else {
            return Err(Error::Core(fleet_core::CoreError::precondition(
                "hand-offs move robots between service areas on etcd; this dispatcher keeps its own store",
            ))
            .into());
        };
        if r.to_area == self.0.area {
            return Err(Error::Core(fleet_core::CoreError::field(
                "to_area",
                format!("robot {robot} is in area {} already", self.0.area),
            ))
            .into());
        }
        let to = r.to_area.clone();
        let asked = to.clone();
        let known =
            tokio::task::spawn_blocking(move || etcd.knows_area(&asked)).await.map_err(|_| Error::Stopped)??;
        if !known {
            return Err(Error::Core(fleet_core::CoreError::field(
                "to_area",
                format!("no service area {to} has ever had a leader on this cluster"),
            ))
            .into());
        }
        match self.0.core.call(Input::HandOffRobot { robot: robot.clone(), to_area: to.clone() }).await? {
            Reply::Robot(handed) => {
                // Committed: the robot and its tokens are the other area's now; its session here ends.
                self.0.auth.moved_away(&robot, &to);
                Ok(Response::new(convert::robot_to_wire(&handed)))
            }
            other => Err(crate::service::unexpected(other)),
        }
    }

    async fn set_robot_shift(&self, req: Request<pb::SetRobotShiftRequest>) -> Result<Response<pb::Robot>, Status> {
        self.0.auth.operator(req.metadata())?;
        let r = req.get_ref();
        let robot = robot_id("robot_id", &r.robot_id).map_err(Error::from)?;
        let end = convert::timestamp("shift_end", r.shift_end.as_ref()).map_err(Error::from)?;
        match self.0.core.call(Input::SetShift { robot, end }).await? {
            Reply::Robot(r) => Ok(Response::new(convert::robot_to_wire(&r))),
            other => Err(unexpected(other)),
        }
    }

    async fn get_order(&self, req: Request<pb::OpsGetOrderRequest>) -> Result<Response<pb::Order>, Status> {
        self.0.auth.operator(req.metadata())?;
        let id = order_id("order_id", &req.get_ref().order_id).map_err(Error::from)?;
        let i = id.clone();
        let o = self.0.core.query(move |d| d.order(&i).map(convert::order_to_wire)).await?;
        o.map(Response::new).ok_or_else(|| Error::not_found(format!("order {id} not found")).into())
    }

    async fn list_alerts(
        &self,
        req: Request<pb::ListAlertsRequest>,
    ) -> Result<Response<pb::ListAlertsResponse>, Status> {
        self.0.auth.operator(req.metadata())?;
        let alerts = self.0.core.query(|d| d.open_alerts().map(alert_to_wire).collect()).await?;
        Ok(Response::new(pb::ListAlertsResponse { alerts }))
    }

    async fn ack_alert(&self, req: Request<pb::AckAlertRequest>) -> Result<Response<pb::AckAlertResponse>, Status> {
        self.0.auth.operator(req.metadata())?;
        let id = req.get_ref().alert_id;
        if id == 0 {
            return Err(Error::Wire(WireError::new("alert_id", "an alert id is a positive number")).into());
        }
        self.0.core.call(Input::AckAlert { id }).await?;
        Ok(Response::new(pb::AckAlertResponse {}))
    }

    async fn reassign_order(&self, req: Request<pb::ReassignOrderRequest>) -> Result<Response<pb::Order>, Status> {
        self.0.auth.operator(req.metadata())?;
        let r = req.get_ref();
        let order = order_id("order_id", &r.order_id).map_err(Error::from)?;
        let robot = robot_id("robot_id", &r.robot_id).map_err(Error::from)?;
        match self.0.core.call(Input::ReassignOrder { order, robot }).await? {
            Reply::Order(o) => Ok(Response::new(convert::order_to_wire(&o))),
            other => Err(unexpected(other)),
        }
    }

    async fn get_policy(&self, req: Request<pb::GetPolicyRequest>) -> Result<Response<pb::PolicyInfo>, Status> {
        self.0.auth.operator(req.metadata())?;
        let policy = self.0.core.query(|d| d.config().policy).await?;
        Ok(Response::new(policy_info(policy)))
    }

    async fn set_policy(&self, req: Request<pb::SetPolicyRequest>) -> Result<Response<pb::PolicyInfo>, Status> {
        self.0.auth.operator(req.metadata())?;
        let policy: fleet_core::dispatcher::Policy =
            req.get_ref().policy.parse().map_err(|e: String| Error::Wire(WireError::new("policy", e)))?;
        self.0.core.call(Input::SetPolicy { policy }).await?;
        Ok(Response::new(policy_info(policy)))
    }

    type WatchFleetStream = FleetStream;

    async fn watch_fleet(&self, req: Request<pb::WatchFleetRequest>) -> Result<Response<FleetStream>, Status> {
        self.0.auth.operator(req.metadata())?;
        let mut notes = self.0.core.subscribe_fleet();
        let now: Vec<pb::Robot> = self.0.core.query(|d| d.robots().map(convert::robot_to_wire).collect()).await?;
        let core = self.0.core.clone();
        Ok(Response::new(async_stream(move |tx| async move {
            for r in now {
                let ev = pb::FleetEvent { event: Some(pb::fleet_event::Event::Robot(r)) };
                if tx.send(Ok(ev)).await.is_err() {
                    return;
                }
            }
            loop {
                let note = tokio::select! {
                    n = notes.recv() => n,
                    () = core.closed() => return,
                };
                let ev = match note {
                    Ok(FleetNote::Robot(r)) => pb::fleet_event::Event::Robot(convert::robot_to_wire(&r)),
                    Ok(FleetNote::Alert { id, robot, message }) => pb::fleet_event::Event::Alert(pb::Alert {
                        robot_id: robot.map(|r| r.to_string()).unwrap_or_default(),
                        message,
                        alert_id: id,
                        raised_at: None,
                    }),
                    Err(RecvError::Lagged(n)) => pb::fleet_event::Event::Alert(pb::Alert {
                        robot_id: String::new(),
                        message: format!("this watcher fell behind and missed {n} fleet events"),
                        alert_id: 0,
                        raised_at: None,
                    }),
                    Err(RecvError::Closed) => return,
                };
                if tx.send(Ok(pb::FleetEvent { event: Some(ev) })).await.is_err() {
                    return;
                }
            }
        })))
    }
}

impl OpsApi {
    /// The principal a role and subject name; a shop or robot must be registered.
    async fn principal_of(&self, role: i32, subject: &str) -> Result<Principal, Status> {
        Ok(match pb::Role::try_from(role) {
            Ok(pb::Role::Shop) => {
                let id = shop_id("subject", subject).map_err(Error::from)?;
                let i = id.clone();
                if !self.0.core.query(move |d| d.shop(&i).is_some()).await? {
                    return Err(Error::not_found(format!("shop {id} is not registered")).into());
                }
                Principal::Shop(id)
            }
            Ok(pb::Role::Robot) => {
                let id = robot_id("subject", subject).map_err(Error::from)?;
                let i = id.clone();
                if !self.0.core.query(move |d| d.robot(&i).is_some()).await? {
                    return Err(Error::not_found(format!("robot {id} is not registered")).into());
                }
                Principal::Robot(id)
            }
            Ok(pb::Role::Operator) => {
                if !subject.is_empty() {
                    return Err(
                        Error::Wire(WireError::new("subject", "subject must be empty for an operator token")).into()
                    );
                }
                Principal::Operator
            }
            _ => {
                return Err(Error::Wire(WireError::new("role", format!("role {} is not a known role", role))).into());
            }
        })
    }
}

fn policy_info(policy: fleet_core::dispatcher::Policy) -> pb::PolicyInfo {
    pb::PolicyInfo {
        policy: policy.to_string(),
        available: fleet_core::dispatcher::Policy::ALL.iter().map(ToString::to_string).collect(),
    }
}

/// What operators see of a map.
fn map_info(m: &MapGraph) -> pb::MapInfo {
    pb::MapInfo {
        nodes: m.node_count() as u64,
        edges: m.edge_count() as u64,
        origin: Some(convert::latlon_to_wire(m.origin())),
        closed: m.closed_edges().map(|(a, b)| pb::EdgeRequest { from_node: a.0, to_node: b.0 }).collect(),
        fingerprint: m.fingerprint(),
    }
}
