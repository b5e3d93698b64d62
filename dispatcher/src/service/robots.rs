//! `trundle.v1.RobotService`: one bidirectional session per robot. The robot is the token's; the first message
//! must be a hello; a malformed message ends the session with INVALID_ARGUMENT and changes nothing.

use std::pin::Pin;
use std::time::Duration;

use fleet_core::CoreError;
use fleet_core::dispatcher::Input;
use fleet_core::mission::FromRobot;
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use trundle_proto::{convert, pb};

use super::Ctx;
use crate::Error;
use crate::auth::Auth;
use crate::limits::Bucket;

pub struct RobotApi(pub Ctx);

/// How long a new session may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);
/// Messages queued towards one robot before it counts as too slow.
const SESSION_QUEUE: usize = 256;

type SessionStream = Pin<Box<dyn Stream<Item = Result<pb::DispatcherMessage, Status>> + Send>>;

#[tonic::async_trait]
impl pb::robot_service_server::RobotService for RobotApi {
    type SessionStream = SessionStream;

    async fn session(&self, req: Request<Streaming<pb::RobotMessage>>) -> Result<Response<SessionStream>, Status> {
        let robot = self.0.auth.robot(req.metadata())?;
        let token_hash = Auth::token_hash(req.metadata()).unwrap_or_default();
        let auth = self.0.auth.clone();
        let mut revocations = auth.revocations();
        let limits = self.0.limits;
        let fencing_token = self.0.fencing_token;
        let area = self.0.area.clone();
        let known = {
            let r = robot.clone();
            self.0.core.query(move |d| d.robot(&r).is_some()).await?
        };
        if !known {
            return Err(Error::not_found(format!("robot {robot} is not registered")).into());
        }
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        let core = self.0.core.clone();
        tokio::spawn(async move {
            // The hello comes first; nothing is attached before it checks out.
            let first = match tokio::time::timeout(HELLO_TIMEOUT, inbound.next()).await {
                Ok(Some(Ok(m))) => m,
                Ok(Some(Err(_))) | Ok(None) => return,
                Err(_) => {
                    let _ = tx.send(Err(Error::NoHello(HELLO_TIMEOUT.as_secs()).into())).await;
                    return;
                }
            };
            let claimed = match &first.msg {
                Some(pb::robot_message::Msg::Hello(h)) => h.robot_id.clone(),
                _ => {
                    let _ = tx
                        .send(Err(Error::Core(CoreError::precondition(
                            "the first message of a session must be a hello",
                        ))
                        .into()))
                        .await;
                    return;
                }
            };
            if !claimed.is_empty() && claimed != robot.as_str() {
                let _ = tx
                    .send(Err(Error::Core(CoreError::PermissionDenied(format!(
                        "this token belongs to robot {robot}, not {claimed}"
                    )))
                    .into()))
                    .await;
                return;
            }
            let hello = match convert::from_robot(first) {
                Ok(h) => h,
                Err(e) => {
                    let _ = tx.send(Err(Status::from(Error::from(e)))).await;
                    return;
                }
            };
            let _ = tx
                .send(Ok(pb::DispatcherMessage {
                    msg: Some(pb::dispatcher_message::Msg::Welcome(pb::Welcome {
                        robot_id: robot.to_string(),
                        fencing_token,
                        area: area.clone(),
                    })),
                }))
                .await;
            let Ok(session) = core.attach(robot.clone(), tx.clone()).await else {
                return;
            };
            if core.send(Input::Robot { robot: robot.clone(), msg: hello }).is_err() {
                return;
            }
            let mut bucket = Bucket::full(limits.session_burst);
            loop {
                let m = tokio::select! {
                    m = inbound.next() => m,
                    () = core.closed() => break,
                    changed = revocations.changed() => {
                        if changed.is_err() || !auth.is_valid(&token_hash) {
                            let why = auth.moved_to(&token_hash).unwrap_or(Error::Revoked);
                            let _ = tx.send(Err(why.into())).await;
                            break;
                        }
                        continue;
                    }
                };
                let Some(Ok(m)) = m else { break };
                if !bucket.take(limits.session_msgs_per_s, limits.session_burst) {
                    let _ = tx
                        .send(Err(Error::RateLimited(format!(
                            "robot {robot} sends more than {} messages per second; reconnect and slow down",
                            limits.session_msgs_per_s
                        ))
                        .into()))
                        .await;
                    break;
                }
                match convert::from_robot(m) {
                    Ok(FromRobot::Hello(_)) => {
                        let _ = tx
                            .send(Err(Error::Core(CoreError::precondition("hello may only be sent once")).into()))
                            .await;
                        break;
                    }
                    Ok(msg) => {
                        if core.send(Input::Robot { robot: robot.clone(), msg }).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(Status::from(Error::from(e)))).await;
                        break;
                    }
                }
            }
            core.detach(robot, session);
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}
