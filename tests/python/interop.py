"""A Trundle client written from the proto files alone: generates Python stubs with grpcio-tools, then places an
order as a shop and reads it back. Exits non-zero on any mismatch."""

import argparse
import importlib
import os
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--proto-dir", required=True)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--addr", required=True)
    ap.add_argument("--token", required=True)
    a = ap.parse_args()

    from grpc_tools import protoc
    import grpc_tools

    os.makedirs(a.out_dir, exist_ok=True)
    wkt = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    files = [os.path.join("trundle", "v1", f) for f in ("common.proto", "orders.proto")]
    rc = protoc.main(["protoc", f"-I{a.proto_dir}", f"-I{wkt}", f"--python_out={a.out_dir}",
                      f"--grpc_python_out={a.out_dir}", *files])
    if rc != 0:
        print("protoc failed", file=sys.stderr)
        return 1
    sys.path.insert(0, a.out_dir)
    import grpc
    common = importlib.import_module("trundle.v1.common_pb2")
    orders = importlib.import_module("trundle.v1.orders_pb2")
    orders_grpc = importlib.import_module("trundle.v1.orders_pb2_grpc")
    from google.protobuf.timestamp_pb2 import Timestamp

    md = [("authorization", f"Bearer {a.token}")]
    with grpc.insecure_channel(a.addr) as ch:
        stub = orders_grpc.OrderServiceStub(ch)
        deadline = Timestamp(seconds=int(time.time()) + 3600)
        delivery = orders.Delivery(
            dropoff=common.LatLon(lat=43.7420, lon=7.4300),
            parcel=common.Parcel(weight_grams=1200, compartments=1),
            deliver_by=deadline,
        )
        placed = stub.PlaceOrder(orders.PlaceOrderRequest(idempotency_key="py-1", delivery=delivery), metadata=md)
        order_id = placed.order.order_id
        if not order_id or len(placed.order.pin) != 6:
            print(f"bad answer: {placed}", file=sys.stderr)
            return 1
        got = stub.GetOrder(orders.GetOrderRequest(order_id=order_id), metadata=md)
        if got.order_id != order_id or got.shop_id != "py-shop":
            print(f"read back {got}", file=sys.stderr)
            return 1
        try:
            stub.GetOrder(orders.GetOrderRequest(order_id=""), metadata=md)
            print("an empty id was accepted", file=sys.stderr)
            return 1
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.INVALID_ARGUMENT:
                print(f"empty id gave {e.code()}", file=sys.stderr)
                return 1
        print(f"placed {order_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
