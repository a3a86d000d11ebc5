"""Personal-data masking: examples of each kind, text that must stay, and property tests."""
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llmcourse.data.pii import PLACEHOLDERS, find_pii, mask_pii


@pytest.mark.parametrize("text, masked, kind", [
    ("我手机13812345678，谢谢", "我手机[手机号]，谢谢", "phone"),
    ("电话 139-0211-4567", "电话 [手机号]", "phone"),
    ("打 +86 159 0000 1111 找我", "打 [手机号] 找我", "phone"),
    ("全角１３８１２３４５６７８也算", "全角[手机号]也算", "phone"),
    ("发到 li.ming@example.com 吧", "发到 [邮箱] 吧", "email"),
    ("13812345678@163.com 是邮箱", "[邮箱] 是邮箱", "email"),
    ("身份证110105198804123318号", "身份证[身份证号]号", "id_card"),
    ("证件 32010619930715002X", "证件 [身份证号]", "id_card"),
    ("卡号6222 0212 3456 7890 123", "卡号[银行卡号]", "bank_card"),
    ("卡号6217001234567890", "卡号[银行卡号]", "bank_card"),
    ("座机021-62345678", "座机[座机号]", "landline"),
])
def test_each_kind_is_replaced_by_its_placeholder(text, masked, kind):
    result, counts = mask_pii(text)
    assert result == masked
    assert counts == {kind: 1}


@pytest.mark.parametrize("text", [
    "订单QH202503120021现在什么状态", "每天7:00至22:00配送", "满59元免配送费", "2025-03-12 12:00 下单",
    "退款1至3个工作日内原路退回", "温度不高于-18℃", "价格 1388 元", "",
])
def test_ordinary_text_is_left_alone(text):
    assert mask_pii(text) == (text, {})


def test_several_kinds_are_counted():
    text = "手机13812345678，备用13566778899，邮箱 a@b.cn，卡6217001234567890"
    masked, counts = mask_pii(text)
    assert counts == {"phone": 2, "email": 1, "bank_card": 1}
    assert masked.count(PLACEHOLDERS["phone"]) == 2 and not find_pii(masked)


# Filler never contains ASCII letters or digits, so it cannot join a number or an address.
filler = st.text(alphabet="退款多久到账请问我的订单，。？！ 、：（）", max_size=12)
phones = st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True) | st.from_regex(r"1[3-9][0-9]-[0-9]{4}-[0-9]{4}", fullmatch=True)
emails = st.from_regex(r"[a-z][a-z0-9._]{0,10}@[a-z0-9]{1,8}\.(com|cn|net)", fullmatch=True)


@st.composite
def id_numbers(draw):
    region = draw(st.from_regex(r"[1-9][0-9]{5}", fullmatch=True))
    born = draw(st.dates(min_value=date(1900, 1, 1), max_value=date(2025, 12, 31)))
    tail = draw(st.from_regex(r"[0-9]{3}[0-9X]", fullmatch=True))
    return f"{region}{born:%Y%m%d}{tail}"


cards = st.from_regex(r"[1-9][0-9]{15,18}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(before=filler, value=phones | emails | id_numbers() | cards, after=filler)
def test_inserted_personal_data_never_survives(before, value, after):
    masked, counts = mask_pii(before + value + after)
    assert value not in masked
    assert sum(counts.values()) == 1
    assert not find_pii(masked)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=60) | st.lists(st.sampled_from(["138", "1234", "5678", " ", "-", "@", "a.cn", "身份",
                                                              "0", "9", "X", "+86"]), max_size=15).map("".join))
def test_masking_leaves_nothing_to_find_and_is_idempotent(text):
    masked, _ = mask_pii(text)
    assert not find_pii(masked)
    assert mask_pii(masked) == (masked, {})
