// Every string the pages show, in English and Korean. The browser's language picks one; the switch on each page
// overrides it (kept in localStorage). Dates, times and numbers follow the chosen locale (see common.js).
const CATALOGUE = {
  en: {
    "app.name": "Trundle",
    "lang.label": "Language",
    "signin.title": "Sign in",
    "signin.token": "Your access token",
    "signin.help": "Paste the token your Trundle operator gave you. You stay signed in on this device.",
    "signin.submit": "Sign in",
    "signin.robot": "Robot tokens cannot sign in here.",
    "signout": "Sign out",
    "live.lost": "Connection lost: reconnecting… What you see may be out of date.",
    "err.network": "The dispatcher cannot be reached.",
    "err.status": "Request failed ({status}).",
    "shop.new": "New delivery",
    "shop.clickmap": "Click the map to set the drop-off, or type its coordinates.",
    "shop.lat": "Latitude",
    "shop.lon": "Longitude",
    "shop.weight": "Weight (g)",
    "shop.compartments": "Compartments",
    "shop.readyin": "Packed in (min)",
    "shop.deliverby": "Deliver by",
    "shop.quote": "Check time",
    "shop.place": "Send robot",
    "shop.eta": "Arrives about {eta} (at the latest {latest})",
    "shop.pickup": "Robot at the shop about {eta}",
    "shop.refused": "Not possible: {reason}",
    "shop.earliest": "Earliest possible: {time}",
    "shop.useearliest": "Use this time",
    "shop.placed": "Order {id} placed",
    "shop.pin": "PIN for the customer",
    "shop.link": "Tracking link for the customer",
    "shop.copy": "Copy",
    "shop.copied": "Copied",
    "shop.newlink": "New tracking link",
    "shop.today": "Today's orders",
    "shop.none": "No orders yet today.",
    "shop.ready": "Ready",
    "shop.isready": "Packed",
    "shop.cancel": "Cancel",
    "shop.confirmcancel": "Cancel order {id}?",
    "shop.robot": "Robot {robot}",
    "shop.etadrop": "Delivery {time}",
    "shop.etapick": "Pick-up {time}",
    "shop.arrived": "Robot {robot} is at the shop for order {id}",
    "shop.history": "History",
    "shop.csv": "Download CSV",
    "shop.delayed": "Running late",
    "col.order": "Order",
    "col.status": "Status",
    "col.created": "Placed",
    "col.deliverby": "Deliver by",
    "col.delivered": "Delivered",
    "col.robot": "Robot",
    "col.battery": "Battery",
    "col.state": "State",
    "col.carrying": "Carrying",
    "col.actions": "",
    "status.PENDING": "Pending",
    "status.ASSIGNED": "Robot assigned",
    "status.TO_PICKUP": "Robot on its way to the shop",
    "status.AT_PICKUP": "Robot at the shop",
    "status.IN_TRANSIT": "On its way",
    "status.AT_DROPOFF": "Robot has arrived",
    "status.DELIVERED": "Delivered",
    "status.CANCELLED": "Cancelled",
    "status.FAILED": "Failed",
    "status.RETURNING": "Returning to the shop",
    "status.RETURNED": "Returned to the shop",
    "status.UNSPECIFIED": "Unknown",
    "track.title": "Your delivery",
    "track.eta": "Arrives about {time}",
    "track.latest": "at the latest {time}",
    "track.pin": "Your PIN to open the lid",
    "track.delivered": "Delivered at {time}",
    "track.ended": "This tracking link has ended.",
    "track.notfound": "This tracking link is not valid. Ask the shop for a new one.",
    "track.delayed": "Your delivery is running late; the time shown is the new estimate.",
    "ops.title": "Operations",
    "ops.robots": "Robots",
    "ops.orders": "Open orders",
    "ops.alerts": "Alerts",
    "ops.noalerts": "No open alerts.",
    "ops.ack": "Acknowledge",
    "ops.pause": "Pause",
    "ops.resume": "Resume",
    "ops.reassign": "Move to",
    "ops.edgetool": "Close or open a sidewalk: click it on the map",
    "ops.edgeclose": "Close the sidewalk {a}–{b}?",
    "ops.edgeopen": "Open the sidewalk {a}–{b} again?",
    "ops.closed": "Closed sidewalks: {n}",
    "ops.today": "Last 24 hours",
    "ops.placed": "Placed",
    "ops.delivered": "Delivered",
    "ops.ontime": "On time",
    "ops.lost": "Cancelled or failed",
    "ops.open": "Open",
    "ops.admin": "Shops, robots and tokens",
    "ops.regshop": "Register shop",
    "ops.regrobot": "Register robot",
    "ops.issue": "Issue token",
    "ops.id": "Id",
    "ops.name": "Name",
    "ops.role": "Role",
    "ops.subject": "Shop or robot id",
    "ops.token": "Token (shown once): {token}",
    "ops.shops": "Shops",
    "ops.more": "Showing the {shown} due soonest of {n}; all are on the map.",
    "state.offline": "Offline",
    "state.faulted": "Faulted",
    "state.paused": "Paused",
    "state.charging": "Charging",
    "state.working": "Working",
    "state.idle": "Idle",
    "map.loading": "Loading the map…",
    "map.failed": "The map could not be loaded.",
  },
  ko: {
    "app.name": "Trundle",
    "lang.label": "언어",
    "signin.title": "로그인",
    "signin.token": "접속 토큰",
    "signin.help": "Trundle 운영자에게 받은 토큰을 붙여 넣으세요. 이 기기에서는 로그인 상태가 유지됩니다.",
    "signin.submit": "로그인",
    "signin.robot": "로봇 토큰으로는 여기에 로그인할 수 없습니다.",
    "signout": "로그아웃",
    "live.lost": "연결이 끊겼습니다. 다시 연결하는 중… 화면의 정보가 최신이 아닐 수 있습니다.",
    "err.network": "디스패처에 연결할 수 없습니다.",
    "err.status": "요청이 실패했습니다 ({status}).",
    "shop.new": "새 배달",
    "shop.clickmap": "지도를 눌러 배달 위치를 정하거나 좌표를 입력하세요.",
    "shop.lat": "위도",
    "shop.lon": "경도",
    "shop.weight": "무게 (g)",
    "shop.compartments": "칸 수",
    "shop.readyin": "포장 완료까지 (분)",
    "shop.deliverby": "배달 마감 시각",
    "shop.quote": "시간 확인",
    "shop.place": "로봇 보내기",
    "shop.eta": "도착 예상 {eta} (늦어도 {latest})",
    "shop.pickup": "로봇 매장 도착 예상 {eta}",
    "shop.refused": "불가능: {reason}",
    "shop.earliest": "가장 빠른 가능 시각: {time}",
    "shop.useearliest": "이 시각으로 하기",
    "shop.placed": "주문 {id} 접수됨",
    "shop.pin": "고객용 PIN",
    "shop.link": "고객용 배송 추적 링크",
    "shop.copy": "복사",
    "shop.copied": "복사됨",
    "shop.newlink": "새 추적 링크",
    "shop.today": "오늘의 주문",
    "shop.none": "오늘은 아직 주문이 없습니다.",
    "shop.ready": "준비 완료",
    "shop.isready": "포장됨",
    "shop.cancel": "취소",
    "shop.confirmcancel": "주문 {id}을(를) 취소할까요?",
    "shop.robot": "로봇 {robot}",
    "shop.etadrop": "배달 {time}",
    "shop.etapick": "픽업 {time}",
    "shop.arrived": "로봇 {robot}이(가) 주문 {id} 때문에 매장에 도착했습니다",
    "shop.history": "지난 주문",
    "shop.csv": "CSV 내려받기",
    "shop.delayed": "지연 중",
    "col.order": "주문",
    "col.status": "상태",
    "col.created": "접수",
    "col.deliverby": "마감",
    "col.delivered": "배달 완료",
    "col.robot": "로봇",
    "col.battery": "배터리",
    "col.state": "상태",
    "col.carrying": "적재",
    "col.actions": "",
    "status.PENDING": "대기 중",
    "status.ASSIGNED": "로봇 배정됨",
    "status.TO_PICKUP": "로봇이 매장으로 가는 중",
    "status.AT_PICKUP": "로봇 매장 도착",
    "status.IN_TRANSIT": "배달 중",
    "status.AT_DROPOFF": "로봇 도착",
    "status.DELIVERED": "배달 완료",
    "status.CANCELLED": "취소됨",
    "status.FAILED": "실패",
    "status.RETURNING": "매장으로 돌아가는 중",
    "status.RETURNED": "매장으로 반송됨",
    "status.UNSPECIFIED": "알 수 없음",
    "track.title": "내 배달",
    "track.eta": "도착 예상 {time}",
    "track.latest": "늦어도 {time}",
    "track.pin": "뚜껑을 여는 PIN",
    "track.delivered": "{time}에 배달 완료",
    "track.ended": "이 추적 링크는 끝났습니다.",
    "track.notfound": "유효하지 않은 추적 링크입니다. 매장에 새 링크를 요청하세요.",
    "track.delayed": "배달이 늦어지고 있습니다. 표시된 시각은 새 예상 시각입니다.",
    "ops.title": "운영",
    "ops.robots": "로봇",
    "ops.orders": "진행 중인 주문",
    "ops.alerts": "경보",
    "ops.noalerts": "확인할 경보가 없습니다.",
    "ops.ack": "확인",
    "ops.pause": "일시 정지",
    "ops.resume": "재개",
    "ops.reassign": "다른 로봇으로",
    "ops.edgetool": "보도 폐쇄 또는 개방: 지도에서 보도를 누르세요",
    "ops.edgeclose": "보도 {a}–{b}을(를) 폐쇄할까요?",
    "ops.edgeopen": "보도 {a}–{b}을(를) 다시 열까요?",
    "ops.closed": "폐쇄된 보도: {n}",
    "ops.today": "최근 24시간",
    "ops.placed": "접수",
    "ops.delivered": "배달 완료",
    "ops.ontime": "정시",
    "ops.lost": "취소 또는 실패",
    "ops.open": "진행 중",
    "ops.admin": "매장, 로봇, 토큰",
    "ops.regshop": "매장 등록",
    "ops.regrobot": "로봇 등록",
    "ops.issue": "토큰 발급",
    "ops.id": "ID",
    "ops.name": "이름",
    "ops.role": "역할",
    "ops.subject": "매장 또는 로봇 ID",
    "ops.token": "토큰 (한 번만 표시): {token}",
    "ops.shops": "매장",
    "ops.more": "{n}건 중 마감이 가장 가까운 {shown}건을 보여 줍니다. 지도에는 모두 표시됩니다.",
    "state.offline": "오프라인",
    "state.faulted": "고장",
    "state.paused": "일시 정지",
    "state.charging": "충전 중",
    "state.working": "작업 중",
    "state.idle": "대기",
    "map.loading": "지도를 불러오는 중…",
    "map.failed": "지도를 불러올 수 없습니다.",
  },
};

export const LANGS = { en: "English", ko: "한국어" };

let current = pick();

function pick() {
  const saved = localStorage.getItem("trundle.lang");
  if (saved && CATALOGUE[saved]) return saved;
  for (const l of navigator.languages || [navigator.language || "en"]) {
    const base = String(l).toLowerCase().split("-")[0];
    if (CATALOGUE[base]) return base;
  }
  return "en";
}

export function lang() {
  return current;
}

// The string for `key` with {name} placeholders filled; the English one if the language lacks it.
export function t(key, vars = {}) {
  const s = (CATALOGUE[current] && CATALOGUE[current][key]) ?? CATALOGUE.en[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (_, k) => (vars[k] === undefined ? "" : String(vars[k])));
}

// A language switch; `rerender` draws the page again in the new language.
export function langSwitch(rerender) {
  const sel = document.createElement("select");
  sel.id = "lang";
  sel.setAttribute("aria-label", t("lang.label"));
  for (const [code, name] of Object.entries(LANGS)) {
    const o = document.createElement("option");
    o.value = code;
    o.textContent = name;
    if (code === current) o.selected = true;
    sel.append(o);
  }
  sel.addEventListener("change", () => {
    current = sel.value;
    localStorage.setItem("trundle.lang", current);
    document.documentElement.lang = current;
    rerender();
  });
  document.documentElement.lang = current;
  return sel;
}

export function keys(code) {
  return Object.keys(CATALOGUE[code] || {});
}
