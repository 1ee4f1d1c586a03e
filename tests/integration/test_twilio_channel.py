"""The Twilio channel with the real twilio client against the fake Twilio REST API."""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Iterator

import pytest

from tests import fake_twilio as fake_twilio_plugin
from tests.fake_twilio import FakeMessage, FakeTwilio
from verification.sms import SmsSendFailed, TwilioSms

fake_twilio = fake_twilio_plugin.fake_twilio  # the fixture, until a conftest registers tests.fake_twilio

FROM = "+15005550006"
TO = "+8613800138000"
BODY = "【发票查验】044012600111/00000001 查验一致，合计¥226.00，第3次查验。Genuine."


@pytest.fixture
def channel(fake_twilio: FakeTwilio) -> Iterator[TwilioSms]:
    sms = TwilioSms(fake_twilio.account_sid, fake_twilio.auth_token, FROM, api_base_url=fake_twilio.base_url)
    yield sms
    sms.close()


def assert_no_secret(exc: BaseException, token: str) -> None:
    text = "".join(traceback.format_exception(exc))
    assert token not in text and token not in repr(exc)


async def test_a_message_reaches_twilio_with_auth(
    channel: TwilioSms,
    fake_twilio: FakeTwilio,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    sid = await channel.send(TO, BODY)
    assert fake_twilio.messages == [FakeMessage(sid, fake_twilio.account_sid, TO, FROM, BODY, 201)]
    assert sid.startswith("SM") and len(sid) == 34
    assert "+86 138****8000" in caplog.text and "13800138000" not in caplog.text


async def test_concurrent_sends_all_arrive(channel: TwilioSms, fake_twilio: FakeTwilio) -> None:
    bodies = [f"message {i}" for i in range(6)]
    sids = await asyncio.gather(*(channel.send(TO, body) for body in bodies))
    assert sorted(m.body for m in fake_twilio.messages) == bodies
    assert len(set(sids)) == len(bodies)


@pytest.mark.parametrize(("status", "words"), [(400, "HTTP 400, code 21211"), (500, "HTTP 500")])
async def test_a_refusal_raises_sms_send_failed(
    channel: TwilioSms,
    fake_twilio: FakeTwilio,
    status: int,
    words: str,
) -> None:
    fake_twilio.fail_next(1, status)
    with pytest.raises(SmsSendFailed, match=words) as caught:
        await channel.send(TO, BODY)
    assert_no_secret(caught.value, fake_twilio.auth_token)
    assert fake_twilio.messages == []
    await channel.send(TO, BODY)  # the next one goes through
    assert len(fake_twilio.messages) == 1


async def test_a_wrong_token_is_refused_without_showing_it(fake_twilio: FakeTwilio) -> None:
    token = "wrong-token-0123456789abcdef"
    sms = TwilioSms(fake_twilio.account_sid, token, FROM, api_base_url=fake_twilio.base_url)
    try:
        with pytest.raises(SmsSendFailed, match="HTTP 401") as caught:
            await sms.send(TO, BODY)
    finally:
        sms.close()
    assert_no_secret(caught.value, token)
    assert [r.status for r in fake_twilio.requests] == [401]


async def test_an_unreachable_twilio_raises_sms_send_failed(fake_twilio: FakeTwilio) -> None:
    base_url = fake_twilio.base_url
    fake_twilio.close()  # nothing listens on the port any more
    sms = TwilioSms(fake_twilio.account_sid, fake_twilio.auth_token, FROM, api_base_url=base_url, timeout_s=2)
    try:
        with pytest.raises(SmsSendFailed, match="could not reach Twilio") as caught:
            await sms.send(TO, BODY)
    finally:
        sms.close()
    assert_no_secret(caught.value, fake_twilio.auth_token)
