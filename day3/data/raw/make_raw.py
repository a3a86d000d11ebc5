"""Regenerate the raw business files of the three Day 3 scenarios (the committed files are its output).

Usage::

    python day3/data/raw/make_raw.py          # rewrites faq/, intent/ and domain_qa/ next to this file

The company (青禾鲜到家, a fresh-grocery delivery app) and every number in it are fictional.
The files imitate what a company hands over: a customer-service chat export (CSV, UTF-8 with BOM,
with duplicates, HTML from the web widget, personal data, empty, overlong and broken rows), the
service policy (Markdown) and the knowledge-base spreadsheet (.xlsx, with a stale row); intent
labels from two annotation batches (the second exported as GBK); a small product manual with
question headings for vertical-domain QA. Output is deterministic (fixed seed, fixed timestamps).
"""

from __future__ import annotations

import csv
import io
import random
import re
import zipfile
from datetime import datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent

# fact id, topic, standard question, similar questions, standard answer, key facts,
# customer questions from the chat log, policy sentence (contains the key facts verbatim)
FAQ_FACTS = [
    ("F01", "配送", "下单后多久能送到？", ["一般多长时间送达？", "配送要等多久？"],
     "下单后最快30分钟送达，高峰期可能延长至60分钟。", ["30分钟"],
     ["我现在下单大概多久能到家", "你们送货快不快啊，多久能到", "刚付完款，东西什么时候能送过来",
      "晚饭要用的菜，现在买来得及吗，要送多久", "配送一般需要几分钟"],
     "订单支付成功后由就近门店拣货配送，最快30分钟送达；午晚高峰等时段可能延长至60分钟。"),
    ("F02", "配送", "多少钱起送？", ["最低消费多少才配送？", "买得少也能送吗？"],
     "订单满29元起送，不足29元无法下单配送。", ["29元"],
     ["我就想买一把葱，能送吗", "你们最低买多少钱才给送", "凑不够金额可以下单吗", "起送价是多少呀",
      "只买一瓶酱油会不会不送"],
     "单笔订单商品金额满29元起送。"),
    ("F03", "配送", "怎样免配送费？", ["满多少钱免运费？", "运费怎么收？"],
     "单笔订单满59元免配送费，未满59元收取5元配送费。", ["59元"],
     ["配送费可以免掉吗", "买够多少不要运费", "为什么我这单收了配送费", "你们家免运费的门槛是多少",
      "送货要额外收钱吗"],
     "单笔订单满59元免配送费；未满59元的订单收取5元配送费。"),
    ("F04", "配送", "每天几点到几点配送？", ["晚上几点以后就不送了？", "早上几点开始送货？"],
     "每天7:00至22:00配送，22:00后下单将于次日7:00起配送。", ["7:00至22:00"],
     ["半夜下单还能送吗", "你们几点开始营业送货", "晚上十一点买的东西什么时候送", "配送的营业时间是什么",
      "一大早能送到吗，我想做早饭"],
     "配送服务时间为每天7:00至22:00；22:00后提交的订单于次日7:00起依次配送。"),
    ("F05", "配送", "配送范围有多大？", ["离门店多远可以送？", "我家比较远能送吗？"],
     "以门店为中心3公里内可配送，超出范围暂不支持配送。", ["3公里"],
     ["我住郊区你们送不送", "地址填不上说超出范围是怎么回事", "几公里以内可以配送", "公司离得有点远可以送到吗",
      "为什么我的地址不在配送区域"],
     "配送范围为以门店为中心3公里内；超出范围的地址暂不支持配送。"),
    ("F06", "配送", "可以预约配送时间吗？", ["能不能指定明天送？", "预约送达最多能约几天？"],
     "可以预约未来2天内的配送时段，每个时段为1小时。", ["2天"],
     ["我想让后天上午送到可以吗", "能定时送货吗", "下周的菜现在能预约吗", "预约送货怎么选时间",
      "我白天不在家，可以约晚上送吗"],
     "用户可预约未来2天内的配送时段，每个时段为1小时。"),
    ("F07", "售后", "生鲜商品坏了怎么申请售后？", ["生鲜售后有时间限制吗？", "蔬菜不新鲜能退吗？"],
     "生鲜商品签收后48小时内可申请售后，需上传商品照片。", ["48小时"],
     ["昨天买的鱼有味道了还能售后吗", "青菜送来就蔫了怎么处理", "肉不新鲜，过了两天还能申请吗",
      "生鲜售后期限是多久", "买的虾死了好多怎么办"],
     "生鲜商品（蔬菜、水果、肉禽、水产等）签收后48小时内可申请售后，申请时需上传商品照片。"),
    ("F08", "售后", "非生鲜商品支持无理由退货吗？", ["买的日用品不想要了能退吗？", "零食饮料可以七天无理由吗？"],
     "非生鲜商品签收后7天内支持无理由退货，商品需未拆封。", ["7天", "未拆封"],
     ["纸巾买多了想退掉", "洗衣液还没开封可以退吗", "买错了一箱矿泉水能退吗，没拆", "零食不想要了有几天可以退",
      "拆开的饼干还能无理由退吗"],
     "非生鲜商品签收后7天内支持无理由退货，商品需未拆封、不影响二次销售。"),
    ("F09", "售后", "商品少送了怎么办？", ["送错了东西找谁？", "漏发商品怎么处理？"],
     "少送或错送请在签收后24小时内联系客服，核实后补发或退款。", ["24小时"],
     ["我买了三样只到了两样", "订单里的鸡蛋没送来", "送来的不是我买的牌子", "骑手漏了一袋东西",
      "收到的苹果数量不对，少了"],
     "发现少送、错送的，请在签收后24小时内联系客服，核实后为您补发或退款。"),
    ("F10", "售后", "坏果退款需要把商品寄回吗？", ["烂掉的水果要退回去吗？", "申请坏果赔付还要退货吗？"],
     "坏果按比例退款，拍照即可，无需寄回商品。", ["无需寄回"],
     ["烂的橙子是要我送回门店吗", "坏掉的西瓜需要骑手上门取吗", "坏果我扔了还能退钱吗",
      "申请坏果退款要不要把东西退回", "几个坏桃子要寄回去才能赔吗"],
     "水果出现腐烂、破损的，按坏果比例退款，上传照片即可，无需寄回商品。"),
    ("F11", "退款", "退款多久到账？", ["钱什么时候退回来？", "退款会退到哪里？"],
     "售后审核通过后，退款1至3个工作日内原路退回。", ["1至3个工作日", "原路退回"],
     ["退款申请通过了钱还没到", "我用微信付的，退款退到哪", "审核完多久能收到退款", "退的钱一直没看到",
      "退款是退到银行卡还是别的地方"],
     "售后审核通过后，退款将在1至3个工作日内原路退回至支付账户。"),
    ("F12", "退款", "下单后还能取消吗？", ["怎么取消订单？", "付款后不想要了能撤销吗？"],
     "门店接单前可免费取消订单，接单后需联系客服处理。", ["接单前"],
     ["刚下的单点错了想取消", "订单已经付款了怎么撤回", "门店已经接单了还能取消吗", "取消订单要扣钱吗",
      "我下重了一单能退掉一个吗"],
     "门店接单前，用户可在订单页免费取消订单；门店接单后如需取消，请联系客服处理。"),
    ("F13", "退款", "买完降价了可以补差价吗？", ["有价格保护吗？", "降价退差价怎么申请？"],
     "签收后3天内同款商品降价，可申请价保，差价退回青禾余额。", ["3天", "青禾余额"],
     ["昨天买的车厘子今天便宜了二十", "刚买完就降价了能退差价吗", "你们有没有保价服务", "价保的期限是几天",
      "差价退到哪里"],
     "签收后3天内同款商品降价的，可申请价格保护，差价退回至青禾余额。"),
    ("F14", "会员", "青禾会员多少钱？", ["会员怎么收费？", "年卡和月卡分别多少钱？"],
     "青禾会员月卡15元，年卡148元。", ["15元", "148元"],
     ["开会员要花多少钱", "会员一个月多少钱", "办年卡划算吗，多少钱", "会员价格是多少", "我想开通会员，费用怎么算"],
     "青禾会员分为月卡和年卡：月卡15元，年卡148元。"),
    ("F15", "会员", "会员有免运费的权益吗？", ["开会员能免配送费吗？", "会员每个月有几次免运费？"],
     "会员每月享8次免配送费，不限订单金额。", ["8次"],
     ["办了会员是不是就不用付运费了", "会员免运费有次数限制吗", "我是会员为什么还收了配送费",
      "会员的运费券一个月几张", "会员买一点点也免运费吗"],
     "会员每月享8次免配送费权益，不限订单金额，当月未用完不累计。"),
    ("F16", "会员", "积分怎么获得和使用？", ["积分能抵钱吗？", "消费送积分吗？"],
     "每消费1元得1积分，100积分可抵扣1元。", ["100积分可抵扣1元"],
     ["我有五千积分能当多少钱用", "积分怎么换算成现金", "买东西会送积分吗", "积分在哪里可以用",
      "积分抵扣的比例是多少"],
     "会员每消费1元累计1积分；下单时100积分可抵扣1元。"),
    ("F17", "会员", "积分会过期吗？", ["积分有效期多久？", "积分什么时候清零？"],
     "积分有效期为12个月，到期自动清零。", ["12个月"],
     ["我去年的积分还能用吗", "积分放着不用会不会作废", "积分多久清一次", "积分到期前会提醒吗，有效期多长",
      "攒了很久的积分怎么少了"],
     "积分自获得之日起有效期为12个月，到期自动清零。"),
    ("F18", "优惠券", "新用户有什么优惠？", ["新人礼包有多少钱？", "第一次注册送什么？"],
     "新用户注册即得58元新人礼包，内含多张满减券。", ["58元"],
     ["我刚下载APP有新人券吗", "新人红包在哪领", "第一次买有没有优惠", "新用户送多少钱的券",
      "朋友说新注册有礼包是真的吗"],
     "新用户注册即可获得58元新人礼包，礼包内含多张满减券。"),
    ("F19", "优惠券", "优惠券可以叠加使用吗？", ["一单能用几张券？", "两张满减券能一起用吗？"],
     "每笔订单限用1张优惠券，不可叠加使用。", ["1张"],
     ["我有两张券为什么只能选一张", "满减券和折扣券能同时用吗", "一次下单能用多张优惠券吗", "券能叠着用吗",
      "为什么第二张券选不了"],
     "每笔订单限用1张优惠券，优惠券之间不可叠加使用。"),
    ("F20", "优惠券", "退款后优惠券还会退回吗？", ["取消订单券会返还吗？", "用了券的订单退了，券怎么办？"],
     "订单全额退款后，未过期的优惠券会自动退回账户。", ["自动退回"],
     ["我退了整单，用掉的券还在吗", "取消订单后优惠券没了", "券用了又退款还能再用吗", "订单退款了红包会还给我吗",
      "退单以后那张满减券去哪了"],
     "订单全额退款后，未过期的优惠券将自动退回用户账户；部分退款不退券。"),
    ("F21", "发票", "怎么开发票？", ["可以开电子发票吗？", "发票多久能开好？"],
     "订单完成后可在“我的-发票”申请电子发票，1个工作日内开具。", ["电子发票", "1个工作日"],
     ["公司报销需要发票怎么弄", "买菜能开票吗", "申请了发票多久能收到", "能开纸质发票吗", "发票在哪里申请"],
     "订单完成后，可在APP“我的-发票”中申请电子发票，1个工作日内开具；暂不提供纸质发票。"),
    ("F22", "发票", "发票抬头开错了能重开吗？", ["发票可以换开吗？", "税号填错了怎么办？"],
     "电子发票开具后30天内可申请换开1次。", ["30天"],
     ["发票抬头写成个人了想改成公司", "开好的发票信息错了能改吗", "发票重开有时间限制吗", "税号少了一位怎么重新开",
      "上个月的发票还能换开吗"],
     "电子发票开具后30天内可申请换开1次。"),
    ("F23", "账号", "怎么注销账号？", ["注销账户要多久？", "不用了想删除账号怎么操作？"],
     "可在“设置-账号与安全”申请注销，审核期为15天。", ["15天"],
     ["我想把账号彻底删掉", "注销申请提交后多久生效", "不想用你们APP了怎么注销", "注销账号需要审核吗",
      "账户注销以后还能恢复吗"],
     "用户可在“设置-账号与安全”中申请注销账号，审核期为15天，审核期内可撤回申请。"),
    ("F24", "账号", "怎么换绑手机号？", ["手机号换了怎么办？", "原手机号收不到验证码怎么换绑？"],
     "在“设置-账号与安全”验证原手机号后即可换绑；原号码无法使用时可提交人工申诉。", ["人工申诉"],
     ["旧手机号停机了登不上", "换了新号码账号怎么改", "收不到验证码没法换绑", "手机丢了怎么改绑定的号码",
      "绑定的手机不用了怎么办"],
     "用户验证原手机号后可自助换绑；原号码无法接收验证码的，可提交人工申诉。"),
    ("F25", "支付", "支持货到付款吗？", ["有哪些支付方式？", "可以送到了再付钱吗？"],
     "暂不支持货到付款，可使用微信支付、支付宝或青禾余额支付。", ["暂不支持货到付款"],
     ["能不能先送货后付款", "我没有微信能付现金吗", "付款方式有几种", "可以用支付宝吗",
      "老人不会手机支付，能收货时给现金吗"],
     "支持微信支付、支付宝和青禾余额支付，暂不支持货到付款。"),
    ("F26", "支付", "订单多久不付款会取消？", ["待支付订单能保留多久？", "忘了付款订单还在吗？"],
     "下单后15分钟内未支付，订单将自动取消。", ["15分钟"],
     ["下了单还没付钱，过会儿再付行吗", "我的订单怎么自己取消了，没付款", "未付款的订单保留多长时间",
      "提交订单后要多快付款", "付款页面关掉了订单会失效吗"],
     "订单提交后15分钟内未支付的，系统将自动取消订单。"),
    ("F27", "商品", "冷冻食品怎么保证不化？", ["冷冻品是冷链配送吗？", "送来的冻货温度有保证吗？"],
     "冷冻商品全程冷链配送，送达时温度不高于-18℃。", ["-18℃"],
     ["买的冰淇淋送到会不会化了", "速冻饺子路上会不会解冻", "夏天买冻肉靠谱吗", "你们冷冻的东西用什么车送",
      "冻虾送到的时候还是冻着的吗"],
     "冷冻商品全程冷链配送，送达时商品温度不高于-18℃。"),
    ("F28", "商品", "会卖快过期的食品吗？", ["保质期快到了的东西还卖吗？", "临期商品怎么处理？"],
     "剩余保质期不足5天的商品不再上架销售。", ["5天"],
     ["上次买的面包第二天就过期了", "你们卖的酸奶保质期还剩几天", "会不会收到快过期的东西", "买到临期食品怎么办",
      "保质期多短的就不卖了"],
     "剩余保质期不足5天的商品不再上架销售。"),
    ("F29", "自提", "可以到门店自提吗？", ["自提多久能取货？", "自提的东西能保留多久？"],
     "选择门店自提，下单2小时后可到店取货，商品保留至当天闭店。", ["2小时"],
     ["我下班顺路自己去店里拿行吗", "自提下单后多久能去取", "自提的货晚上还能拿吗", "不要配送，自己去拿怎么选",
      "到店取货需要等多久"],
     "选择门店自提的订单，下单2小时后可到店取货，商品保留至当天闭店。"),
    ("F30", "客服", "人工客服几点上班？", ["怎么联系人工客服？", "客服的服务时间是什么时候？"],
     "人工客服服务时间为每天9:00至21:00，其他时间可留言。", ["9:00至21:00"],
     ["转人工怎么没人理", "半夜有客服吗", "客服电话几点能打通", "我要找真人客服", "你们客服周末上班吗"],
     "人工客服服务时间为每天9:00至21:00，其他时间可在线留言，客服上班后回复。"),
]
# Knowledge-base rows that must NOT survive the build: a retired promotion (not in the current policy),
# a row without an answer, a row whose key fact is not written in its answer.
FAQ_BAD_ROWS = [
    ("F31", "优惠券", "双11有什么活动？", ["双十一满减力度多大？"], "双11期间全场满199减50。", ["满199减50"],
     ["双十一还有满减吗", "今年双11满多少减多少"]),
    ("F32", "其他", "如何成为青禾团长？", ["团长怎么申请？"], "", [], ["我想当团长怎么报名"]),
    ("F33", "售后", "鸡蛋破了怎么赔？", ["蛋碎了能退吗？"], "鸡蛋破损可在签收后二十四小时内申请退款。", ["24小时"],
     ["送来的鸡蛋碎了三个"]),
]

FAQ_POLICY = """\
# 青禾鲜到家 用户服务政策（2025年3月版）

本政策适用于青禾鲜到家 APP 及小程序的全部订单。如与活动页面说明不一致，以活动页面为准。

## 一、配送服务

1. {F01}
2. {F02}
3. {F03}
4. {F04}
5. {F05}
6. {F06}
7. 门店自提：{F29}

## 二、售后服务

1. **生鲜商品**：{F07}
2. **非生鲜商品**：{F08}
3. **少送错送**：{F09}
4. **坏果赔付**：{F10}

## 三、退款与价格保护

1. {F11}
2. {F12}
3. {F13}

## 四、会员与积分

1. {F14}
2. {F15}
3. {F16}
4. {F17}

## 五、优惠券

1. {F18}
2. {F19}
3. {F20}

> 注：历史促销活动（如往年双11满减）已全部结束，不再适用。

## 六、发票

1. {F21}
2. {F22}

## 七、账号与支付

1. {F23}
2. {F24}
3. {F25}
4. {F26}

## 八、商品品质

1. {F27}
2. {F28}

## 九、联系我们

{F30}
"""

INTENT_LABELS = ["查询订单", "退款退货", "配送问题", "优惠活动", "发票开具", "投诉建议", "账号问题", "商品咨询"]
INTENT_MESSAGES = {
    "查询订单": ["我的订单到哪了", "帮我查一下订单状态", "下单一个小时了还没动静", "订单显示已出库是什么意思",
             "怎么看骑手现在的位置", "我昨天的订单送到了吗", "订单一直显示待接单", "查一下我今天上午那单",
             "订单号QH202503120021现在什么状态", "我的菜什么时候能到", "为什么订单详情里看不到骑手信息",
             "帮我看看订单是不是卡住了", "历史订单在哪里查", "我想确认一下订单有没有下成功", "付款成功了但订单列表里没有",
             "订单里显示拣货中要多久", "能不能查到我上周买了什么", "骑手接单了吗", "刚才那个订单现在到哪一步了",
             "订单状态一直不更新"],
    "退款退货": ["我要退货", "怎么申请退款", "鸡蛋碎了好几个要退钱", "退款申请被驳回了怎么办", "买的牛排不新鲜想退",
             "退货需要我自己寄吗", "退款什么时候到", "退款进度在哪里看", "不想要了能退吗，还没拆", "水果烂了申请售后",
             "整单退款怎么操作", "我只想退其中一件商品", "退款金额不对，少退了", "售后申请提交不了", "买错了拖鞋要退",
             "收到的酸奶已经胀包了要退款", "退货的时候赠品要一起退吗", "申请退款要上传照片吗", "退款退到哪个账户",
             "帮我取消这单并退款"],
    "配送问题": ["骑手送错地址了", "配送太慢了等了两个小时", "能不能送上楼", "我家小区能送吗", "配送员没打电话就放门口了",
             "能指定时间送吗", "今天下雨会延迟配送吗", "地址填错了怎么修改", "我不在家能放快递柜吗", "配送费怎么算的",
             "几点之后就不送了", "能送到公司前台吗", "骑手说找不到我家", "送货上门要加钱吗", "预约明天早上送可以吗",
             "为什么显示超出配送范围", "配送前可以先打电话联系我吗", "下单后多久开始配送", "能不能换一个骑手送",
             "同一个地址一天能送两次吗"],
    "优惠活动": ["最近有什么优惠活动", "新人券怎么领", "优惠券为什么用不了", "满减活动是满多少减多少", "会员日有折扣吗",
             "优惠券快过期了能延期吗", "秒杀活动几点开始", "分享给朋友有奖励吗", "积分能换什么", "今天有没有特价水果",
             "两张券能一起用吗", "生日有优惠券送吗", "领的红包在哪里看", "邀请好友注册送多少钱", "周末有满赠活动吗",
             "团购怎么参加", "优惠券没到账", "买会员送券吗", "限时折扣什么时候结束", "第二件半价的活动还有吗"],
    "发票开具": ["怎么开发票", "能开公司抬头的发票吗", "发票开错了要重开", "电子发票在哪里下载", "我需要增值税专用发票",
             "发票多久能开出来", "几个订单能合并开一张发票吗", "发票税号怎么填", "可以开纸质发票寄给我吗",
             "发票金额和实付不一样", "上个月的订单还能补开发票吗", "发票抬头怎么修改", "开票信息能保存吗", "退款后发票怎么办",
             "发票发到邮箱可以吗", "开发票要收费吗", "个人能开发票吗", "发票内容能写办公用品吗", "我的发票申请一直在处理中",
             "发票上能显示商品明细吗"],
    "投诉建议": ["我要投诉骑手态度差", "你们客服回复太慢了", "建议增加晚上的配送时段", "骑手把东西扔在地上",
             "商品质量越来越差了", "我要投诉门店缺斤少两", "客服说会回电话结果没人打", "希望APP能加个夜间模式",
             "骑手送货时抽烟", "对处理结果不满意", "能不能多上一些有机蔬菜", "包装太多塑料了，不环保", "我要给骑手差评",
             "上次投诉到现在没人处理", "称重的重量明显不对", "你们的价格比超市贵太多了", "建议增加老人专用的简单模式",
             "店员服务很好想表扬一下", "配送员强行让我确认收货", "客服挂我电话"],
    "账号问题": ["登录不上怎么办", "收不到验证码", "怎么修改登录密码", "账号被冻结了", "我想注销账号", "手机号换了怎么改绑",
             "怎么绑定微信登录", "账号被别人登录了", "余额怎么不见了", "怎么修改昵称和头像", "一个手机号能注册两个账号吗",
             "忘记支付密码了", "实名认证怎么做", "账号提示存在风险", "怎么退出登录", "家里人能共用一个账号吗",
             "收货地址怎么删除", "个人信息怎么下载", "APP一直闪退登不进去", "换手机后账号数据还在吗"],
    "商品咨询": ["这个牛奶是哪里产的", "车厘子是几J的", "有没有无糖的酸奶", "猪肉是冷鲜肉吗", "鸡蛋是散养的吗",
             "这个大米是今年的新米吗", "水果有没有打蜡", "有机蔬菜有认证吗", "三文鱼能生吃吗", "蛋糕能提前预订吗",
             "榴莲包不包熟", "进口牛排是哪个国家的", "婴儿辅食有卖吗", "这个酱油是零添加的吗", "面包保质期几天",
             "海鲜是活的还是冻的", "西瓜甜不甜", "有小包装的米吗", "冻饺子是什么馅的", "这款橄榄油是初榨的吗"],
}

# Vertical-domain QA template: a product manual whose question headings carry an id and whose
# answers mark key facts in bold; extra questions from support tickets point to those ids.
DOMAIN_FACTS = [
    ("D01", "XN-5 的电池容量是多少？", "XN-5 单台电池容量为**5.12千瓦时**，最多可并联4台。",
     ["一台能存多少度电", "单机容量有多大", "这个储能柜是几度电的", "电池有多少千瓦时", "XN-5容量多大"]),
    ("D02", "气温低于零度时可以充电吗？", "电池温度低于**0℃**时禁止充电，系统会先自动加热电池。",
     ["冬天零下能不能充电", "北方冬天充电有问题吗", "电池冷的时候充不进电正常吗", "低温环境下能充电吗",
      "零下十度充电安全吗"]),
    ("D03", "电池能循环使用多少次？", "电池设计循环寿命为**6000次**（80%放电深度）。",
     ["电池寿命有多长", "能充放电多少回", "用十年电池会坏吗", "循环次数是多少", "电芯能用多少个循环"]),
    ("D04", "整机质保多久？", "整机质保**10年**，需在安装后30天内完成线上登记。",
     ["保修期是几年", "坏了免费修多久", "质保怎么登记", "电池保几年", "过了保修期怎么办"]),
    ("D05", "可以安装在卧室里吗？", "不建议安装在卧室，应安装在**通风良好**、远离热源的位置。",
     ["放在房间里安全吗", "装在哪里比较好", "能不能放床边", "安装位置有什么要求", "可以装在锅炉旁边吗"]),
    ("D06", "可以安装在户外吗？", "XN-5 防护等级为**IP65**，可安装在有遮挡的户外。",
     ["放阳台外面淋雨行吗", "防水等级是多少", "能不能挂在室外墙上", "户外安装要注意什么", "下雨会进水吗"]),
    ("D07", "停电时多久能切换到电池供电？", "市电中断后系统在**10毫秒**内切换到离网供电。",
     ["断电了冰箱会停吗", "切换时间有多快", "停电电脑会不会关机", "离网切换要多久", "市电断了多久开始供电"]),
    ("D08", "在哪里查看电池电量？", "在**曦能云**APP中可实时查看电量与发电数据。",
     ["手机上能看电量吗", "用什么软件看发电量", "怎么远程查看储能状态", "电量显示在哪里", "有没有配套的APP"]),
    ("D09", "光伏并网需要报装吗？", "光伏并网前需向当地**电网公司**报装，审批通过后方可并网。",
     ["接入电网要审批吗", "并网要去哪里申请", "自己装好就能并网吗", "卖电给电网需要什么手续", "并网流程是什么"]),
    ("D10", "需要定期维护吗？", "建议每**6个月**检查一次接线和散热口，无需更换电池液。",
     ["多久保养一次", "平时要怎么维护", "需要加电池液吗", "散热口要清理吗", "日常检查多久做一次"]),
]

PHONES = ["13812345678", "139-0211-4567", "186 2233 4455", "+86 15900001111", "17712340987", "13566778899"]
EMAILS = ["zhang.wei88@example.com", "lina_2024@example.cn", "wangfang@mail.example.com"]
ID_NUMBERS = ["110105198804123318", "32010619930715002X", "440304200001018875"]
BANK_CARDS = ["6222 0212 3456 7890 123", "6217001234567890", "6228480012345678917"]


def _times(rng: random.Random, count: int) -> list[str]:
    start = datetime(2025, 3, 1, 8, 0, 0)
    stamps = sorted(start + timedelta(seconds=rng.randrange(31 * 24 * 3600)) for _ in range(count))
    return [stamp.strftime("%Y-%m-%d %H:%M:%S") for stamp in stamps]


def _with_pii(rng: random.Random, question: str, index: int) -> str:
    kind = index % 4
    if kind == 0:
        return f"{question}，我手机{rng.choice(PHONES)}"
    if kind == 1:
        return f"{question}。有结果请发邮件到 {rng.choice(EMAILS)}"
    if kind == 2:
        return f"我身份证号{rng.choice(ID_NUMBERS)}，{question}"
    return f"{question}，退款的卡号是{rng.choice(BANK_CARDS)}"


def _with_html(question: str, index: int) -> str:
    forms = ["<p>{q}</p>", "{q}<br>", "您好&nbsp;{q}", "<div>{q}</div><br/>", "<p>在的，想问下</p><p>{q}</p>"]
    return forms[index % len(forms)].format(q=question)


def _reply(rng: random.Random, answer: str) -> str:
    closing = rng.choice(["还有其他可以帮您的吗？", "祝您生活愉快~", "感谢您的耐心等待！", ""])
    extra = f"已为您备注联系电话{rng.choice(PHONES)}。" if rng.random() < 0.1 else ""
    return f"亲，您好~<br>{answer}{extra}{closing}"


def faq_chat_rows(rng: random.Random) -> list[list[str]]:
    """Rows of the chat export (without header and without the broken rows)."""
    base = [(fact[0], question, fact[4]) for fact in FAQ_FACTS for question in fact[6]]
    messages = []
    for index, (fact_id, question, answer) in enumerate(base):
        if index % 8 == 3:
            question = _with_pii(rng, question, index // 8)
        elif index % 10 == 6:
            question = _with_html(question, index // 10)
        elif index in (40, 95):  # a message typed as two lines
            question = question[: len(question) // 2] + "\n" + question[len(question) // 2:]
        messages.append((fact_id, question, answer))
    picks = rng.sample(base, 20)
    messages += [(fact_id, question + rng.choice(["", "？", "??", " "]), answer) for fact_id, question, answer in picks[:12]]
    near = [item for item in picks[12:] if len(item[1]) >= 9]
    messages += [(fact_id, question.replace("吗", "么") if "吗" in question else question + "呀", answer)
                 for fact_id, question, answer in near]
    messages += [(fact_id, _with_html(question, 2), answer) for fact_id, question, answer in rng.sample(base, 3)]
    conflict = rng.choice(base)
    messages.append(("F25" if conflict[0] != "F25" else "F26", conflict[1], conflict[2]))
    for fact_id, _, _, _, answer, _, questions in FAQ_BAD_ROWS:
        messages += [(fact_id, question, answer) for question in questions]
    messages += [("", text, "") for text in ["在吗", "你好", "好的谢谢", "？？"]]
    messages += [("", text, "") for text in ["你们公司在哪里招聘送货员", "帮我看看订单QH202503120128怎么回事",
                                             "门店的联系电话能告诉我吗", "可以介绍一下你们的股东吗"]]
    messages += [("F99", "我想问问企业团购能不能打折", "亲，企业团购请联系商务。"),
                 ("FAQ-12", "礼品卡怎么用", "亲，礼品卡在我的-卡券中绑定。")]
    rant = ("上周六在你们家买的排骨和两条鲈鱼，送来的时候袋子已经破了，冰袋全化了，鱼闻着都有点味道，"
            "我当时忙着带孩子没来得及拍照，第二天想申请售后，结果页面一直转圈，打电话又占线，"
            "到现在都没有人给我一个说法，我在你们平台买了两年东西，从来没遇到过这种情况，"
            "真的非常失望，请问现在还能不能处理，能不能给我全额退款，不然我只能去投诉了")
    messages += [("F07", rant, ""), ("F07", rant.replace("排骨", "牛腩"), ""), ("F11", rant.replace("全额退款", "先把钱退了"), "")]
    rng.shuffle(messages)
    stamps = _times(rng, len(messages) + 5)
    rows = []
    for index, (fact_id, question, answer) in enumerate(messages):
        channel = "网页" if "<" in question or "&nbsp;" in question else rng.choice(["APP", "APP", "小程序"])
        reply = _reply(rng, answer) if answer else ("亲，请问有什么可以帮您？" if fact_id == "" else "")
        rating = rng.choice(["满意", "满意", "一般", "不满意", ""])
        rows.append([f"S{stamps[index][:10].replace('-', '')}{index:04d}", stamps[index], channel, question, reply,
                     fact_id, rating])
    rows.insert(17, ["", "", "", "", "", "", ""])
    rows.insert(61, ["", "", "", "", "", "", ""])
    rows.insert(88, [f"S20250316{9001:04d}", "2025-03-16 10:02:51", "APP", "", "亲，您好~", "", ""])
    rows.insert(140, [f"S20250322{9002:04d}", "2025-03-22 19:40:03", "小程序", "   ", "", "F01", "一般"])
    return rows


def write_faq(rng: random.Random) -> None:
    out = HERE / "faq"
    out.mkdir(exist_ok=True)
    header = ["会话ID", "消息时间", "渠道", "客户消息", "客服回复", "关联知识", "满意度"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(faq_chat_rows(rng))
    lines = buffer.getvalue().encode("utf-8").split(b"\r\n")
    broken = [  # unquoted commas and a cut-off line, as produced by a hand-edited export
        "S202503150999,2025-03-15 10:22:11,APP,我要退货,但是已经拆了,还能退吗,亲，拆封后不支持无理由退货。,F08,满意".encode(),
        "S202503181203,2025-03-18 21:09:45,小程序,积分怎么兑换".encode(),
        "S202503200417,2025-03-20 08:15:00,APP,配送费,能便宜点吗,亲,F03,,一般".encode(),
        # a line pasted from a GBK system: its bytes are not UTF-8
        "S202503210530,2025-03-21 12:30:10,APP,会员卡怎么续费,亲，会员页面可续费。,F14,满意".encode("gbk"),
        "S202503251648,2025-03-25 16:48:27,网页,发票抬头能改吗,亲，开具后30天内可换开。,F22,".encode("gbk"),
    ]
    for position, line in zip((30, 75, 120, 52, 160), broken):
        lines.insert(position, line)
    (out / "chat_export_2025-03.csv").write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(lines))
    write_faq_sheet(out / "faq_knowledge_base.xlsx")
    policy = FAQ_POLICY.format(**{fact[0]: _bold_facts(fact[7], fact[5]) for fact in FAQ_FACTS})
    (out / "service_policy.md").write_text(policy, encoding="utf-8")


def _bold_facts(sentence: str, facts: list[str]) -> str:
    for fact in facts:
        sentence = sentence.replace(fact, f"**{fact}**", 1)
    return sentence


def write_faq_sheet(path: Path) -> None:
    from openpyxl import Workbook

    workbook = Workbook()
    notes = workbook.active
    notes.title = "说明"
    notes.append(["青禾鲜到家 客服知识库导出"])
    notes.append(["导出时间", "2025-03-31"])
    notes.append(["说明", "FAQ 工作表每行一个知识点；相似问法一行一个；关键信息用分号分隔。"])
    sheet = workbook.create_sheet("FAQ")
    sheet.append(["编号", "分类", "标准问题", "相似问法", "标准答案", "关键信息", "更新日期", "负责人"])
    rows = [(f[0], f[1], f[2], f[3], f[4], f[5]) for f in FAQ_FACTS] + [row[:6] for row in FAQ_BAD_ROWS]
    for index, (fact_id, topic, question, similar, answer, facts) in enumerate(rows):
        if fact_id == "F21":
            answer = answer.replace("，", "，<br>", 1)  # pasted from the web editor
        similar_cell = ("\n\n" if fact_id == "F12" else "\n").join(similar)
        sheet.append([fact_id, topic, question, similar_cell, answer, "；".join(facts),
                      f"2025-0{1 + index % 3}-{10 + index % 18}", "运营-" + "甲乙丙"[index % 3]])
        if fact_id == "F16":
            sheet.append([None] * 8)
    sheet.append([sheet[6][i].value for i in range(8)])  # F05 exported twice
    workbook.properties.creator = "qinghe-kb"
    workbook.properties.created = workbook.properties.modified = datetime(2025, 3, 31, 9, 0, 0)
    buffer = io.BytesIO()
    workbook.save(buffer)
    # openpyxl stamps the zip entries and docProps "modified" with the current time: pin both so the
    # file only changes with its content
    with zipfile.ZipFile(buffer) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            content = source.read(item.filename)
            if item.filename == "docProps/core.xml":
                content = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*", rb"\g<1>2025-03-31T09:00:00Z", content)
            target.writestr(zipfile.ZipInfo(item.filename, date_time=(2025, 3, 31, 9, 0, 0)), content,
                            compress_type=zipfile.ZIP_DEFLATED)


def write_intent(rng: random.Random) -> None:
    out = HERE / "intent"
    out.mkdir(exist_ok=True)
    labelled = [(text, label) for label, texts in INTENT_MESSAGES.items() for text in texts]
    rng.shuffle(labelled)
    rows = []
    for index, (text, label) in enumerate(labelled):
        if index % 9 == 4:
            text = _with_pii(rng, text, index // 9)
        elif index % 17 == 8:
            text = _with_html(text, index // 17)
        rows.append([text, label])
    rows += [[text, label] for text, label in rng.sample(labelled, 10)]  # annotated twice
    rows += [[text + "？", label] for text, label in rng.sample(labelled, 4)]
    rows += [[text + "呀", label] for text, label in rng.sample([item for item in labelled if len(item[0]) >= 8], 4)]
    rows += [[text, ""] for text in ["你们这个怎么弄啊", "上次那个事情", "喂喂喂有人吗在不在", "帮我处理一下"]]
    rows += [["我要退货退款", "退货退款"], ["活动商品能开发票吗", "其他"], ["订单和发票都有问题", "不确定"],
             ["骑手太慢了我要投诉", "投诉"]]
    conflict = rng.sample(labelled, 2)
    rows += [[conflict[0][0], "投诉建议" if conflict[0][1] != "投诉建议" else "商品咨询"],
             [conflict[1][0], "查询订单" if conflict[1][1] != "查询订单" else "配送问题"]]
    rows += [["嗯", "查询订单"], ["？", "投诉建议"], ["", "退款退货"]]
    rows += [["我真的很生气，" * 30 + "请给我一个解释", "投诉建议"]]
    rng.shuffle(rows)
    header = ["编号", "客户消息", "意图", "标注人", "备注"]
    split = len(rows) * 3 // 5
    for name, part, encoding in [("annotated_batch1.csv", rows[:split], "utf-8"),
                                 ("annotated_batch2_gbk.csv", rows[split:], "gbk")]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        offset = 1 if encoding == "utf-8" else 5001
        for index, (text, label) in enumerate(part):
            writer.writerow([f"M{offset + index:05d}", text, label, "标注员" + "ABC"[index % 3], ""])
        data = buffer.getvalue()
        raw = data.encode(encoding)
        if encoding == "utf-8":
            raw += "M09998,我的积分,少了,查询订单,标注员A,\n".encode()  # unquoted comma: one column too many
            raw += "M09999,发票怎么开,发票开具,标注员B,\n".encode("gbk")  # pasted from a GBK file
        (out / name).write_bytes(raw)


def write_domain_qa(rng: random.Random) -> None:
    out = HERE / "domain_qa"
    out.mkdir(exist_ok=True)
    lines = ["# 曦能 XN-5 家用储能系统 用户手册（节选）", "",
             "本手册面向家庭用户，介绍 XN-5 的安装、使用与维护。", "",
             "## 安全须知", "", "安装与检修必须由持证电工完成，切勿自行拆开电池包。", "",
             "## 常见问题", ""]
    for fact_id, question, answer, _ in DOMAIN_FACTS:
        lines += [f"### {question} {{#{fact_id}}}", "", answer, ""]
    lines += ["### 电池可以自己更换吗？", "", "请联系售后工程师。", ""]  # no id and no bold fact: rejected
    (out / "xn5_manual.md").write_text("\n".join(lines), encoding="utf-8")
    rows = [[question, fact_id, rng.choice(["售后工单", "安装群", "电话回访"])]
            for fact_id, _, _, questions in DOMAIN_FACTS for question in questions]
    rows += [rows[3][:], rows[17][:]]
    rows += [["我家电话13812345678，" + rows[8][0], rows[8][1], "电话回访"], ["逆变器噪音大吗", "D99", "售后工单"],
             ["", "D01", "安装群"]]
    rng.shuffle(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["问题", "知识点编号", "来源"])
    writer.writerows(rows)
    (out / "support_questions.csv").write_text(buffer.getvalue(), encoding="utf-8")


def main() -> None:
    write_faq(random.Random(2025))
    write_intent(random.Random(2026))
    write_domain_qa(random.Random(2027))


if __name__ == "__main__":
    main()
